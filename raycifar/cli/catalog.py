"""``raycifar model list|info`` and ``raycifar space show|sample``: the model family and the
search spaces, looked at without Ray (``space show`` without torch either)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.markup import escape

from raycifar.cli.common import FormatOption, console, exit_codes, print_json, print_record, table

model_app = typer.Typer(help="The registered model family: names, sizes, MACs.", no_args_is_help=True)
space_app = typer.Typer(help="Search spaces: show their dimensions, draw configs without Ray.", no_args_is_help=True)


def _model_summary(config) -> dict:
    """Size and shape of one resolved model, as plain values."""
    from raycifar.models.budget import count_macs, count_params
    from raycifar.models.registry import model_name

    return {
        "model": model_name(config),
        "params": count_params(config),
        "macs": count_macs(config),
        "depths": list(config.depths),
        "widths": list(config.widths),
        "feature_sizes": config.feature_sizes(),
        "architecture": config.model_dump(mode="json"),
    }


@model_app.command("list")
def model_list(output_format: FormatOption = "table") -> None:
    """List the registered models with their size on CIFAR-10 (10 classes)."""
    from raycifar.models.registry import VARIANTS, variant_config

    rows = [{"name": name, **_model_summary(variant_config(name)), "description": v.description} for name, v in VARIANTS.items()]
    if output_format == "json":
        print_json(rows)
        return
    shown = table("name", "params", "MMACs", "widths", "description")
    for row in rows:
        widths = "/".join(map(str, row["widths"]))
        shown.add_row(row["name"], f"{row['params']:,}", f"{row['macs'] / 1e6:,.0f}", widths, row["description"])
    console.print(shown)


@model_app.command("info")
def model_info(
    name: Annotated[str, typer.Argument(help="A registered model name (see `raycifar model list`).")],
    num_classes: Annotated[int, typer.Option(min=2, help="Classifier outputs (10 for CIFAR-10, 100 for CIFAR-100).")] = 10,
    output_format: FormatOption = "table",
) -> None:
    """Parameters, MACs per 32x32 image and per-stage widths of one registered model."""
    from raycifar.models.registry import VARIANTS, variant_config

    with exit_codes():
        config = variant_config(name, num_classes)
    info = {"name": name, "description": VARIANTS[name].description, "num_classes": num_classes, **_model_summary(config)}
    if output_format == "json":
        print_json(info)
        return
    architecture = info.pop("architecture")
    print_record({**info, **{k: v for k, v in architecture.items() if k not in info}})


@space_app.command("show")
def space_show(
    space: Annotated[str, typer.Argument(help="A shipped space name or a path to a YAML file.")],
    output_format: FormatOption = "table",
) -> None:
    """Show a space's settings (budget, dataset, loader, scheduler ...) and every dimension
    of every section (constant or sampler)."""
    from raycifar.space.file import SECTION_KEYS, dimensions
    from raycifar.space.find import load_space

    with exit_codes():
        loaded = load_space(space)
    spec = loaded.spec
    settings = {key: value for key, value in spec.model_dump(mode="json").items() if key not in SECTION_KEYS}
    summary = {
        "space": loaded.name, "path": str(loaded.path), **settings,
        "scheduler": spec.scheduler.given() | {"name": spec.scheduler.name},
        "searcher": spec.searcher.model_dump(exclude_defaults=True) | {"name": spec.searcher.name},
    }  # fmt: skip
    shown = {key: dimension.describe() for key, dimension in dimensions(spec)}
    if output_format == "json":
        print_json({**summary, "dimensions": shown})
        return
    print_record({key: json.dumps(value) if isinstance(value, dict) else value for key, value in summary.items()})
    dims = table("dimension", "value or sampler")
    for key, value in shown.items():
        dims.add_row(key, escape(value))
    console.print(dims)


def _searched(record: dict) -> str:
    """``lr 0.0812 · optimizer sgd · momentum 0.9`` (keys without their section)."""
    def shown(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else json.dumps(value).strip('"')

    return " · ".join(f"{key.split('.', 1)[1]} {shown(value)}" for key, value in record.items())


@space_app.command("sample")
def space_sample(
    space: Annotated[str, typer.Argument(help="A shipped space name or a path to a YAML file.")],
    num: Annotated[int, typer.Option("-n", "--num", min=1, help="How many configs to draw.")] = 10,
    seed: Annotated[int, typer.Option(min=0, help="Seed (0 or more) for drawing: the same seed as `raycifar sweep --seed` gives the same configs (the random searcher's, and tpe's first random ones).")] = 0,
    output_format: FormatOption = "table",
) -> None:
    """Draw configs as a sweep would (fitted widths, params, MACs) without starting Ray."""
    from raycifar.data.readers import default_data_dir
    from raycifar.search.sample import sample_configs
    from raycifar.space.find import load_space

    started = time.perf_counter()
    with exit_codes():
        loaded = load_space(space)
        draws = sample_configs(loaded, num, seed, default_data_dir())
    seconds = time.perf_counter() - started
    rows = [
        {**_model_summary(c.model), "budget_use": c.params / c.budget, "seed": c.seed, "search": search,
         "train": c.train.model_dump(mode="json")}
        for c, search in zip(draws.configs, draws.searches, strict=True)
    ]  # fmt: skip
    if output_format == "json":
        print_json(rows)
        return
    shown = table("#", "model", "params", "budget", "MMACs", "widths", "searched (keys whose condition holds)")
    for index, row in enumerate(rows):
        shown.add_row(
            str(index), row["model"], f"{row['params']:,}", f"{row['budget_use']:.1%}", f"{row['macs'] / 1e6:,.0f}",
            "/".join(map(str, row["widths"])), escape(_searched(row["search"])),
        )  # fmt: skip
    console.print(shown)
    console.print(
        f"{num} configs from {loaded.path} in {seconds:.2f} s; budget {loaded.spec.budget:,}; "
        f"{draws.redrawn} over-budget draws redrawn"
    )
