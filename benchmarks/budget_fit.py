"""How fast raycifar fits widths to a budget: per registered model, cold and warm, and a
whole `space sample` draw, next to a naive full-model meta-device count for scale.

    python benchmarks/budget_fit.py [--budget 5000000] [--format table|json]

"cold" clears the part caches first (the first config of a sweep); "warm" repeats the
fit (later configs of the same shape). "naive count" builds the whole model on the meta
device once, which is what every step of a solver without part caching would pay.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from raycifar.models import budget
from raycifar.models.budget import count_params, fit_widths
from raycifar.models.registry import VARIANTS, variant_config
from raycifar.models.resnet import build_model
from raycifar.search.sample import sample_configs
from raycifar.space.find import load_space

CACHES = [budget._block_params, budget._stem_params, budget._head_params]


def _seconds(action, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _clear_caches() -> None:
    for cache in CACHES:
        cache.cache_clear()


def measure(budget_params: int) -> list[dict]:
    rows = []
    for name in VARIANTS:
        config = variant_config(name)
        naive = _seconds(lambda c=config: sum(p.numel() for p in build_model(c, "meta").parameters()), 3)
        _clear_caches()
        cold = _seconds(lambda c=config: fit_widths(c, budget_params))
        warm = _seconds(lambda c=config: fit_widths(c, budget_params), 5)
        fitted = fit_widths(config, budget_params)
        rows.append({
            "model": name, "fitted_widths": list(fitted.widths), "params": count_params(fitted),
            "budget_use": count_params(fitted) / budget_params, "fit_cold_ms": cold * 1e3,
            "fit_warm_ms": warm * 1e3, "naive_count_ms": naive * 1e3,
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=5_000_000)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    rows = measure(args.budget)
    _clear_caches()
    space = load_space("resnet_space")
    sample_s = _seconds(lambda: sample_configs(space, 200, 0, Path(".")))
    summary = {"resnet_space_200_configs_s": sample_s, "per_config_ms": sample_s / 200 * 1e3}
    if args.format == "json":
        print(json.dumps({"models": rows, "sampling": summary}, indent=2))
        return
    print(f"{'model':<18} {'fitted widths':<18} {'params':>10} {'use':>6} {'cold ms':>8} {'warm ms':>8} {'naive count ms':>15}")
    for r in rows:
        widths = "/".join(map(str, r["fitted_widths"]))
        print(f"{r['model']:<18} {widths:<18} {r['params']:>10,} {r['budget_use']:>6.1%} "
              f"{r['fit_cold_ms']:>8.1f} {r['fit_warm_ms']:>8.2f} {r['naive_count_ms']:>15.1f}")  # fmt: skip
    cold = [r["fit_cold_ms"] for r in rows]
    print(f"fit, cold: median {statistics.median(cold):.1f} ms, max {max(cold):.1f} ms; "
          f"warm: median {statistics.median(r['fit_warm_ms'] for r in rows):.2f} ms")  # fmt: skip
    print(f"space sample resnet_space -n 200 (cold caches): {sample_s:.2f} s = {summary['per_config_ms']:.1f} ms per config")


if __name__ == "__main__":
    main()
