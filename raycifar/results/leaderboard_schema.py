"""The leaderboard's columns (a pyarrow schema) and their versions.

Version 1 is the single-file table of older raycifars (``leaderboard.parquet``); version 3
added ``test_acc_mean``, ``test_acc_std`` and ``seeds``; version 4 ``device``, the unit of
``device_hours``; version 5 the robustness columns ``corrupted_acc``, ``robustness_gap`` and
``corrupted_set``. Rows of older versions read with the newer columns null.
"""

from __future__ import annotations

import pyarrow as pa

from raycifar.results.schema import VAL_ACC

SCHEMA_VERSION = 5  # 3: test_acc_mean, test_acc_std, seeds; 4: device; 5: robustness (null in rows of older versions)


ENTRY_FOLDER = "checkpoint_path"  # the column holding the entry's folder (so named since version 1)

# Version 5: robustness on a corrupted test set (raycifar.entries.robustness); null when not scored.
CORRUPTED_ACC = "corrupted_acc"  # mean accuracy over every corruption x severity of the set (fraction)
ROBUSTNESS_GAP = "robustness_gap"  # clean accuracy on the same images minus corrupted_acc
CORRUPTED_SET = "corrupted_set"  # the corrupted set's folder (robustness.json in the entry describes it)
ROBUSTNESS_FILE = "robustness.json"  # in the entry's folder: the figures per corruption, severity and class

# Schema version 1: the single-file table (leaderboard.parquet) of older raycifars.
LEGACY_SCHEMA = pa.schema(
    [
        ("entry_id", pa.string()),
        ("created_at", pa.timestamp("s", tz="UTC")),
        ("sweep", pa.string()),
        ("space", pa.string()),
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("params", pa.int64()),
        ("budget", pa.int64()),
        (VAL_ACC, pa.float64()),
        ("test_acc", pa.float64()),
        ("test_loss", pa.float64()),
        ("epochs", pa.int64()),
        ("trial_id", pa.string()),
        ("config_json", pa.string()),
        (ENTRY_FOLDER, pa.string()),
        ("source_checkpoint", pa.string()),
        ("seed", pa.int64()),
        ("raycifar_version", pa.string()),
    ]
)


SCHEMA = pa.schema(
    [
        # Version 1's columns first, in its order (Parquet has no second unit: created_at reads back in ms).
        *(pa.field("created_at", pa.timestamp("ms", tz="UTC")) if f.name == "created_at" else f for f in LEGACY_SCHEMA),
        ("schema_version", pa.int32()),
        ("macs", pa.int64()),
        ("label_mode", pa.string()),
        ("test_images", pa.int64()),
        ("test_acc_tta", pa.float64()),
        ("test_acc_ci_low", pa.float64()),
        ("test_acc_ci_high", pa.float64()),
        ("extra_test_acc", pa.map_(pa.string(), pa.float64())),
        ("device_hours", pa.float64()),
        ("wall_s", pa.float64()),
        ("git_sha", pa.string()),
        ("host", pa.string()),
        # Version 3: the test accuracy over the runs of several seeds (raycifar train --seeds):
        # mean and sample standard deviation (n - 1; null for one seed) of their test_acc, and their number.
        ("test_acc_mean", pa.float64()),
        ("test_acc_std", pa.float64()),
        ("seeds", pa.int64()),
        # Version 4: the unit of device_hours: "GPU" (GPU-hours) or "CPU" (CPU core-hours);
        # null where it is unknown (rows of older versions, raycifar train runs).
        ("device", pa.string()),
        # Version 5: the clean accuracy stays test_acc; the robustness figures, null where not scored
        # (rows of older versions, promotions that skipped the corrupted set).
        (CORRUPTED_ACC, pa.float64()),
        (ROBUSTNESS_GAP, pa.float64()),
        (CORRUPTED_SET, pa.string()),
    ]
)


COLUMNS = tuple(SCHEMA.names)


LEGACY_COLUMNS = tuple(LEGACY_SCHEMA.names)
