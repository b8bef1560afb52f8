"""Worker groups that Ray Train 2.60 leaves behind, and their release.

When a worker dies while its group is still starting, Ray Train's controller ends the run
with a ``ControllerError`` and shuts down without removing the group's placement group: its
placement-group cleaner only learns of a group once the group has started. Such a placement
group keeps its CPUs/GPUs reserved until the sweep's driver exits, so the retried run (or
any other trial) can wait for them forever. Seen in ``benchmarks/soak.py``: two CPUs held by
placement groups whose only actor was a dead ``RayTrainWorker``, two trials stuck in
"worker group startup timed out".

:func:`release_leaked` finds them through Ray's public state API and removes them. This
module imports Ray only inside its functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

TRAIN_WORKER = "RayTrainWorker"


def leaked_placement_groups(table: Mapping[str, Mapping[str, Any]], actors: Iterable[Any]) -> list[str]:
    """Ids of the placement groups that are reserved (``CREATED``) but hold only dead Ray
    Train workers: a group that is starting holds pending or alive actors (or none yet), a
    group being restarted is removed by its controller.

    ``table``: :func:`ray.util.placement_group_table`'s (hex id -> info with ``state``);
    ``actors``: :func:`ray.util.state.list_actors` entries (``placement_group_id``,
    ``class_name``, ``state``).
    """
    members: dict[str, list[Any]] = {}
    for actor in actors:
        if actor.placement_group_id:
            members.setdefault(actor.placement_group_id, []).append(actor)
    return [
        group_id
        for group_id, info in table.items()
        if info.get("state") == "CREATED"
        and members.get(group_id)
        and all(a.class_name == TRAIN_WORKER and a.state == "DEAD" for a in members[group_id])
    ]


def release_leaked() -> int:
    """Remove the placement groups :func:`leaked_placement_groups` finds on the connected
    Ray; returns how many. Best effort: 0 when the state API cannot be reached (a Ray
    started without its dashboard)."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray.util.state import list_actors

    try:
        actors = list_actors(limit=10_000, detail=True, raise_on_missing_output=False)
        leaked = leaked_placement_groups(ray.util.placement_group_table(), actors)
    except Exception:  # noqa: BLE001 - no state API: nothing to release, the retry may still start
        return 0
    for group_id in leaked:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(group_id)))
    return len(leaked)
