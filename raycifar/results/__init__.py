"""results: the results folder as files. What a sweep, a run or a promotion wrote is read
and written here, and nowhere else.

=====================  ==========================================================
module                 holds
=====================  ==========================================================
``sweep_record``       ``sweep_record.json``: the driver's plan, trial states, heartbeat
``trial_files``        Tune's per-trial files (``params.json``, ``result.json``,
                       ``progress.csv``), read
``resume``             ``resume.json``: what ``--resume`` needs
``selection``          the best epoch over every trial's history
``cost``               device-hours from the epochs reported
``leaderboard``        the row files of the leaderboard, written once, read together
``leaderboard_schema``  the leaderboard's columns and their versions
``status``             the status of the sweeps in a results folder (the model; the CLI
                       draws it)
=====================  ==========================================================

May import: pyarrow, pydantic, filelock, ``models.registry``, the ground modules. Imports
neither torch nor Ray.
"""
