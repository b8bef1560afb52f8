"""train: one Ray Train run, and the training loop each of its workers runs.

=================  ==============================================================
module             holds
=================  ==============================================================
``run``            the ``TorchTrainer`` factory, retries, and the run of ``raycifar train``
``worker``         the one worker loop (resume, report and checkpoint every epoch) under a
                   session: Ray Train's, or Tune's for in-trial trials
``checkpoints``    an in-trial trial's checkpoint folder: staged, renamed in, the best kept
``loop``           :class:`~raycifar.train.loop.Training`: one worker's model, optimizer,
                   schedule and weight average, epoch by epoch
``epoch``          one pass over the training data, with the divergence check
``scoring``        evaluation and test-time augmentation
``optim``          optimizer, learning-rate schedule, weight average (EMA)
``runtime``        precision, memory format, compilation, seeds
``compile_policy`` when ``compile: auto`` compiles, and the node's record it learns from
``loss``           the batch loss: mixup/cutmix, label smoothing, class weights
``process_group``  the torch process group of a run, on loopback when Ray is local
``leaked_groups``  placement groups Ray Train leaves reserved, released
=================  ==============================================================

May import: ``ray.train`` and ``ray`` (never ``ray.tune``), torch, ``models``, ``data``,
``results`` (its schema; ``atomic`` for the node's compile record), filelock, ``cluster``, the ground modules.
"""
