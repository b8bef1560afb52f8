"""cluster: where Ray runs. Starting or joining it, what a run may use, and the dashboard's
clients.

===============  ================================================================
module           holds
===============  ================================================================
``session``      the connection policy: environment, start or join, resources
``dashboard``    a cluster's nodes and jobs through the dashboard's public clients
``entrypoint``   the shell lines that start a sweep, or resume it on a retry
``kuberay``      ``raycifar k8s``: a RayJob and its claim, as dicts
``slurm``        ``raycifar slurm``: the batch script, and the jobs it ran
``slurm_parts``  the batch script's bash parts (ports, Ray, driver, cleanup)
===============  ================================================================

May import: ``results`` (time stamps), the ground modules; Ray only inside its functions.
"""
