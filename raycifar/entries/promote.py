"""Promotion: a checkpoint becomes a leaderboard entry (export, one test evaluation, one row).

The entry folder (``model.safetensors``, ``config.json``, ``predictions.npz``, the model
card ``README.md``) is staged under a hidden name and renamed into place, then its row file
is created: a failure on the way leaves neither, and a row always points at complete files.

A failure to write (a full disk, no permission, a file where a folder should be, the
leaderboard lock held by another process) is one :class:`~raycifar.errors.PromotionFailed`
line naming the path and the fix; what the attempt wrote is removed first (never what was
there before), so promoting again finishes the job.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from raycifar import __version__
from raycifar.config import TrialConfig
from raycifar.data.corrupted_reader import CorruptedSet, read_corrupted_set
from raycifar.data.fingerprint import data_fingerprint
from raycifar.entries.data_record import DATA_FILE, record_fingerprint
from raycifar.entries.evaluate import PREDICTIONS_FILE, LabelledPredictions, test_predictions, test_scores
from raycifar.entries.metrics import wilson_interval
from raycifar.entries.model_card import CARD_FILE, render_card
from raycifar.entries.robustness import (
    ROBUSTNESS_FILE,
    Tell,
    check_matches,
    decide,
    default_folder,
    find_corrupted,
    robustness_figures,
    row_fields,
    save_figures,
)
from raycifar.errors import PromotionFailed, UserError
from raycifar.models.budget import count_macs
from raycifar.models.files import CONFIG_FILE, MODEL_FILE, rebuild
from raycifar.models.registry import model_name
from raycifar.results.layout import entries_dir, entry_dir
from raycifar.results.leaderboard import LeaderboardLocked, claim_entry, import_legacy_table, row_path, write_row
from raycifar.results.leaderboard_schema import ENTRY_FOLDER

EXTRA_TEST_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
GIT_TIMEOUT_S = 10


def source_revision() -> str | None:
    """The git commit of the raycifar source checkout this code runs from, with ``-dirty``
    when tracked files differ from it; None for an installed package (no checkout) or
    without git."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "raycifar"], capture_output=True,
            timeout=GIT_TIMEOUT_S,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}", sha.stdout.strip()):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")


def check_extra_tests(extra_tests: Mapping[str, Path]) -> dict[str, Path]:
    """The extra test sets as name -> absolute folder; a :class:`UserError` for a bad name
    or a folder that does not exist."""
    checked = {}
    for name, folder in extra_tests.items():
        if not re.fullmatch(EXTRA_TEST_NAME, name):
            raise UserError(f"--extra-test {name}={folder}: name it with letters, digits, '.', '_' and '-' only")
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise UserError(f"--extra-test {name}={folder}: no such folder")
        checked[name] = path
    return checked


def seed_statistics(test_accs: Sequence[float]) -> dict:
    """The leaderboard's seed columns of the test accuracies (fractions) of ``n >= 1`` runs
    that differ only in their seed: ``test_acc_mean``, ``test_acc_std`` (the sample standard
    deviation, dividing by n - 1; None for one run) and ``seeds`` (n)."""
    if not test_accs:
        raise ValueError("seed_statistics needs the test accuracy of at least one run")
    return {
        "test_acc_mean": statistics.fmean(test_accs),
        "test_acc_std": statistics.stdev(test_accs) if len(test_accs) > 1 else None,
        "seeds": len(test_accs),
    }


# errno -> (what went wrong, writing PATH; what the user does about it)
WRITE_PROBLEMS = {
    errno.ENOSPC: ("no space left on device", "free space"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota"),
    errno.EACCES: ("permission denied", "make the results folder writable"),
    errno.EPERM: ("operation not permitted", "make the results folder writable"),
    errno.EROFS: ("read-only file system", "make the results folder writable"),
}


def _in_the_way(err: OSError) -> Path | None:
    """The file that stands where a folder is needed, when that is why ``err`` (EEXIST or
    ENOTDIR) was raised: the path named by the error or the first of its parents that exists
    and is not a folder."""
    if err.errno not in (errno.EEXIST, errno.ENOTDIR) or not err.filename:
        return None
    path = Path(err.filename)
    for candidate in (path, *path.parents) if err.errno == errno.EEXIST else path.parents:
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def write_failure(subject: str, err: OSError, path: Path) -> PromotionFailed:
    """The :class:`PromotionFailed` of ``err``, raised while writing ``path`` for the promotion
    of ``subject``: its cause in words, the path, and what to do."""
    blocker = _in_the_way(err)
    if blocker is not None:
        return PromotionFailed(subject, f"{blocker} is a file where a folder is expected", "move it away")
    problem, fix = WRITE_PROBLEMS.get(err.errno, ((err.strerror or type(err).__name__).lower(), "check that disk"))
    return PromotionFailed(subject, f"{problem} writing {path}", fix)


@contextmanager
def writing(subject: str, path: Path, staged: tuple[Path, Path] | None = None) -> Iterator[None]:
    """Turn an :class:`OSError` of the block, which writes ``path``, and a held leaderboard
    lock, into :class:`PromotionFailed`. ``staged``: (staging folder, entry folder): a file
    the error names in the staging folder is named as it will be in the entry folder."""
    try:
        yield
    except LeaderboardLocked as err:
        raise PromotionFailed(
            subject, f"the leaderboard lock {err.path} stayed held by another raycifar process for {err.timeout_s:g} s",
            "wait until that process has finished (delete the lock file only if no raycifar is running)",
        ) from None  # fmt: skip
    except OSError as err:
        written, named = path, Path(str(err.filename)) if err.filename else None
        if staged is not None and named is not None and named.is_relative_to(staged[0]):
            written = staged[1] / named.relative_to(staged[0])
        raise write_failure(subject, err, written) from None


def _row(
    entry_id: str, target: Path, config: TrialConfig, predictions: LabelledPredictions, extra: dict[str, float], **fields
) -> dict:
    low, high = wilson_interval(predictions.correct, predictions.n)
    return {
        "entry_id": entry_id,
        "created_at": datetime.now(timezone.utc).replace(microsecond=0),
        "space": config.space,
        "dataset": config.dataset,
        "label_mode": config.label_mode,
        "model": model_name(config.model),
        "params": config.params,
        "macs": count_macs(config.model),
        "budget": config.budget,
        "test_acc": predictions.acc,
        "test_loss": predictions.loss,
        "test_images": predictions.n,
        "test_acc_tta": predictions.acc_tta,
        "test_acc_ci_low": low,
        "test_acc_ci_high": high,
        "extra_test_acc": extra or None,
        "config_json": json.dumps(config.model_dump(mode="json"), sort_keys=True),
        ENTRY_FOLDER: str(target),
        "seed": config.seed,
        "raycifar_version": __version__,
        "git_sha": source_revision(),
        "host": socket.gethostname(),
        **fields,
    }


def _stage(
    staging: Path, checkpoint_folder: Path, extra_tests: dict[str, Path], sweep: str, target: Path,
    robustness: Robustness,
    data_dir: Path | None = None,
) -> tuple:
    """Copy the model files into ``staging``, evaluate them (the corrupted set too, when
    ``robustness`` decides so), save the predictions (and ``robustness.json``).
    Writing errors are :class:`PromotionFailed` naming the file under ``target``."""
    for name in (MODEL_FILE, CONFIG_FILE):
        source = checkpoint_folder / name
        if not source.is_file():
            raise UserError(f"{checkpoint_folder}: missing {name}; not a raycifar checkpoint")
        with writing(sweep, target / name, (staging, target)):
            shutil.copy2(source, staging / name)
    try:
        model, config = rebuild(staging)
    except UserError as err:  # name the checkpoint's files, not their staged copies
        raise UserError(str(err).replace(str(staging), str(checkpoint_folder))) from None
    if data_dir is not None and str(data_dir) != config.data_dir:  # a sweep whose data folder was re-pointed
        config = config.model_copy(update={"data_dir": str(data_dir)})
        with writing(sweep, target / CONFIG_FILE, (staging, target)):
            (staging / CONFIG_FILE).write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    start = time.perf_counter()
    predictions = test_predictions(model, config, Path(config.data_dir))
    clean_seconds = time.perf_counter() - start
    extra = {name: test_scores(model, config, folder)["test_acc"] for name, folder in extra_tests.items()}
    with writing(sweep, target / PREDICTIONS_FILE, (staging, target)):
        predictions.save(staging / PREDICTIONS_FILE)
    figures = robustness.score(model, config, predictions, clean_seconds)
    if figures is not None:
        with writing(sweep, target / ROBUSTNESS_FILE, (staging, target)):
            save_figures(staging / ROBUSTNESS_FILE, figures)
    return config, predictions, extra, figures


class Robustness:
    """How a promotion treats the corrupted test set: ``corrupted`` (a folder given by the
    user, checked before anything is written) or the default folder, ``choice`` (True:
    score, False: never, None: by :func:`raycifar.entries.robustness.decide`'s rule), the
    sweep's wall time for that rule, and ``tell``, where the decision is said."""

    def __init__(
        self, corrupted: Path | None, choice: bool | None, sweep_wall_s: float | None, tell: Tell | None
    ) -> None:
        self.given: CorruptedSet | None = read_corrupted_set(corrupted) if corrupted is not None else None
        self.choice, self.sweep_wall_s = choice, sweep_wall_s
        self.tell: Tell = tell or (lambda _: None)

    def score(self, model, config: TrialConfig, clean: LabelledPredictions, clean_seconds: float) -> dict | None:  # noqa: ANN001 - an nn.Module
        """``robustness.json``'s figures, or None when the set is absent or not scored."""
        if self.choice is False:
            return None
        if self.given is not None:
            check_matches(self.given, config)
        found = self.given or find_corrupted(config, None, self.tell)
        if found is None:
            if self.choice:
                raise UserError(
                    f"--robustness: no corrupted test set; give --corrupted DIR or write {default_folder(config)} "
                    f"with: raycifar data corrupt --data-dir {config.data_dir} --dataset {config.dataset}"
                )
            return None
        decision = decide(self.choice, found, clean.n, clean_seconds, self.sweep_wall_s)
        self.tell(f"robustness: {decision.reason}")
        if not decision.score:
            return None
        figures = robustness_figures(model, config, found, Path(config.data_dir), clean)
        self.tell(
            f"robustness: corrupted_acc {figures['corrupted_acc']:.4f} over {len(figures['mean_over'])} corruptions x "
            f"{len(found.severities)} severities, gap {figures['gap']:.4f} ({figures['seconds']:.0f} s)"
        )
        return figures


def promote(
    checkpoint_folder: Path,
    results_dir: Path,
    *,
    sweep: str,
    trial_id: str,
    val_acc: float,
    epochs: int,
    source_checkpoint: str,
    extra_tests: Mapping[str, Path] | None = None,
    wall_s: float | None = None,
    device_hours: float | None = None,
    device: str | None = None,
    other_seed_test_accs: Sequence[float] | None = None,
    corrupted: Path | None = None,
    robustness: bool | None = None,
    sweep_wall_s: float | None = None,
    tell: Tell | None = None,
    data_dir: Path | None = None,
) -> dict:
    """Export the model in ``checkpoint_folder`` to a new entry, evaluate it once on the
    test set of its config's ``data_dir`` (and on each labelled ``extra_tests`` folder, by
    name), write its model card and its row, and return the row.

    ``wall_s`` is the training run's wall-clock time (seconds) and ``device_hours`` the
    device time spent to produce it, where the caller knows them: GPU-hours when ``device``
    is ``"GPU"``, CPU core-hours when it is ``"CPU"`` (:mod:`raycifar.results.cost`).

    ``other_seed_test_accs``: the test accuracies of the runs that repeated this one with
    other seeds (``raycifar train --seeds``), measured by the same evaluation; the row's
    ``test_acc_mean``, ``test_acc_std`` and ``seeds`` then cover this run and those
    (:func:`seed_statistics`). None (a sweep's promotion): they stay null.

    ``corrupted``, ``robustness``, ``sweep_wall_s``: the corrupted test set and whether to
    score it (see :class:`Robustness` and :mod:`raycifar.entries.robustness`); its figures go
    to the entry's ``robustness.json`` and the row's robustness columns. ``tell`` receives
    one line on what was decided.

    ``data_dir``: the data folder to test on instead of the checkpoint config's (a sweep whose
    moved data folder a resume re-pointed); the entry's config then names it.

    Raises :class:`PromotionFailed` when the entry cannot be written (see the module's
    docstring); nothing of this attempt is left then.
    """
    extra_tests = check_extra_tests(extra_tests or {})
    scoring = Robustness(corrupted, robustness, sweep_wall_s, tell)  # a bad --corrupted fails before anything is written
    with writing(sweep, entries_dir(results_dir)):
        import_legacy_table(results_dir)  # so that the new id is also new to an old table
        entry_id, staging = claim_entry(results_dir, sweep)
    target = entry_dir(results_dir, entry_id)
    try:
        config, predictions, extra, figures = _stage(staging, checkpoint_folder, extra_tests, sweep, target, scoring, data_dir)
        row = _row(
            entry_id, target, config, predictions, extra, sweep=sweep, trial_id=trial_id, val_acc=val_acc,
            epochs=epochs, source_checkpoint=source_checkpoint, wall_s=wall_s, device_hours=device_hours,
            device=device, **row_fields(figures),
        )  # fmt: skip
        if other_seed_test_accs is not None:
            row.update(seed_statistics([predictions.acc, *other_seed_test_accs]))
        card = render_card(row, predictions.labels, predictions.predicted, predictions.class_names)
        with writing(sweep, target / CARD_FILE, (staging, target)):
            (staging / CARD_FILE).write_text(card)
        with writing(sweep, target / DATA_FILE, (staging, target)):  # the data's fingerprint, for a later re-point
            data = Path(config.data_dir)
            record_fingerprint(staging, data, data_fingerprint(data, config.dataset, config.label_mode))
        with writing(sweep, target, (staging, target)):
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        with writing(sweep, row_path(results_dir, entry_id)):
            write_row(results_dir, row)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return row
