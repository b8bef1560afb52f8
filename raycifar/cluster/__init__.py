"""cluster: where Ray runs. Starting or joining it, what a run may use, and the dashboard's
clients.

=============  ==================================================================
module         holds
=============  ==================================================================
``session``    the connection policy: environment, start or join, resources
``dashboard``  a cluster's nodes and jobs through the dashboard's public clients
=============  ==================================================================

May import: ``results`` (time stamps), the ground modules; Ray only inside its functions.
"""
