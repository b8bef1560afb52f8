"""Which placement groups raycifar releases after a Ray Train run failed while its worker
group started (raycifar.train.leaked_groups), on tables shaped like Ray's state API answers."""

from __future__ import annotations

from types import SimpleNamespace

from raycifar.train.leaked_groups import leaked_placement_groups


def actor(group: str | None, class_name: str, state: str) -> SimpleNamespace:
    return SimpleNamespace(placement_group_id=group, class_name=class_name, state=state)


def test_only_reserved_groups_whose_train_workers_all_died_are_leaked() -> None:
    # Taken from the stuck soak run: two CPU groups holding one dead RayTrainWorker each,
    # next to a trial's own group (its Tune function and controller alive).
    table = {
        "leaked1": {"state": "CREATED"},
        "leaked2": {"state": "CREATED"},
        "removed": {"state": "REMOVED"},  # its controller already removed it
        "starting": {"state": "CREATED"},  # no actor placed yet
        "pending-workers": {"state": "CREATED"},
        "running": {"state": "CREATED"},
        "trial": {"state": "CREATED"},
    }
    actors = [
        actor("leaked1", "RayTrainWorker", "DEAD"),
        actor("leaked2", "RayTrainWorker", "DEAD"),
        actor("removed", "RayTrainWorker", "DEAD"),
        actor("pending-workers", "RayTrainWorker", "DEAD"),
        actor("pending-workers", "RayTrainWorker", "PENDING_CREATION"),
        actor("running", "RayTrainWorker", "ALIVE"),
        actor("trial", "TrainController", "DEAD"),
        actor("trial", "ImplicitFunc", "ALIVE"),
        actor(None, "RayTrainWorker", "DEAD"),
    ]
    assert leaked_placement_groups(table, actors) == ["leaked1", "leaked2"]
