"""pipeline: the user's jobs, top to bottom. Each is a plain function of plain arguments;
the CLI only parses and prints.

================  ===============================================================
module            holds
================  ===============================================================
``sweep_job``     ``raycifar sweep``: validate, plan, run on Ray, promote the best
``resume_job``    ``raycifar sweep --resume``: continue or extend a sweep
``train_job``     ``raycifar train``: one config on Ray Train, with seeds, promoted
``submit_job``    ``--submit``, ``logs``, ``stop``: sweeps as Ray jobs on a cluster
``steps``         what the jobs share: connecting, promoting a checkpoint, the report
``preflight``     what every job checks before Ray starts
``wandb_log``     W&B: ``raycifar train`` runs and promoted models
================  ===============================================================

May import: every package below it. Only ``submit_job`` imports Ray itself (its job clients).
"""
