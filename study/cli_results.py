"""``study best | report | score | show-data | reproduce | list``: what studies found, and the
registries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from analysis.stores import resolve_tracking_uri
from trainables.errors import UserError

from .cli_app import STORAGE_HELP, app, console, fail
from .errors import SpecError


@app.command()
def best(
    study: Annotated[str, typer.Option(help="Study name (= MLflow experiment)")],
    metric: Annotated[str, typer.Option(help="Final metric, e.g. mig")],
    mode: Annotated[str | None, typer.Option(help="max or min (default: the metric's)")] = None,
    top: Annotated[int, typer.Option(help="How many runs")] = 5,
    where: Annotated[
        str | None, typer.Option(help="Filters: family=vae,dataset.name=dsprites (params or tags)")
    ] = None,
    config: Annotated[
        bool, typer.Option("--config", help="Print the YAML that reruns the best trial alone")
    ] = False,
    tracking_uri: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """The best trials of a study by a final metric, with their swept params."""
    from analysis.results import filter_runs, load_runs, varying_params
    from analysis.tables import best_runs

    if mode not in (None, "max", "min"):
        fail(f"--mode must be 'max' or 'min', got {mode!r}")
    try:
        runs = load_runs(resolve_tracking_uri(tracking_uri), study)
        runs = filter_runs(runs, where or "")
        ranked = best_runs(runs, metric, mode, top)
    except UserError as err:
        fail(str(err).strip("'\""))
    if config:
        import yaml

        print(yaml.safe_dump(rerun_spec(ranked.iloc[0], study), sort_keys=False), end="")
        return
    params = varying_params(runs, exclude=()) or ["seed"]
    rows = [
        {
            "run_id": row["run_id"],
            "trial_id": row.get("tags.trial_id"),
            metric: float(row[f"metrics.{metric}"]),
            "params": {p: row.get(f"params.{p}") for p in params},
        }
        for _, row in ranked.iterrows()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{study}: best by {metric}")
    for column in ["run_id", *params, metric]:
        table.add_column(column)
    for row in rows:
        table.add_row(row["run_id"][:12], *map(str, row["params"].values()), f"{row[metric]:.4f}")
    console.print(table)


@app.command()
def report(
    study: Annotated[
        list[str], typer.Option(help="Study name; repeat to compare studies side by side")
    ],
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("report"),
    tracking_uri: Annotated[str | None, typer.Option()] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Keep the runs here; later reports fetch only new runs")
    ] = None,
) -> None:
    """report.html (self-contained) and report.md: the studies' question, answer, tables and
    figures; also scores.md / scores.tex, summary.csv and runs.csv."""
    from analysis.report import write_report

    try:
        written = write_report(resolve_tracking_uri(tracking_uri), study, out, cache=cache)
    except UserError as err:
        fail(str(err).strip("'\""))
    for path in written:
        if path.suffix in (".html", ".md", ".tex", ".csv"):
            console.print(f"wrote {path}")
    console.print(f"open {out / 'report.html'}")


@app.command()
def score(
    file: Annotated[
        Path, typer.Argument(help=".npz with codes, factors [, codes_test, factors_test]")
    ],
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metric names")] = None,
    mode: Annotated[
        str | None, typer.Option(help="reference or fast (default: the file's, else reference)")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Metric RNG seed (default: the file's RNG state, else 0)")
    ] = None,
    num_train: Annotated[
        int | None,
        typer.Option(help="Rows scored as the train split (default: 2/3, at most 10,000)"),
    ] = None,
    num_test: Annotated[
        int | None,
        typer.Option(help="Rows scored as the test split (default: the rest, at most 5,000)"),
    ] = None,
    bin_factors: Annotated[
        int | None,
        typer.Option(help="Cut each continuous factor into N equal-width bins (default: refuse)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Score plain arrays with the disentanglement metrics (no model, no Ray, no MLflow)."""
    from trainables.metrics import MODES
    from trainables.metrics.scoring import load_arrays, score_arrays

    if mode is not None and mode not in MODES:
        fail(f"--mode must be one of {list(MODES)}, got {mode!r}")
    names = [m.strip() for m in metrics.split(",")] if metrics else None
    try:
        arrays = load_arrays(file)
        with console.status("computing metrics") as status:
            result = score_arrays(
                arrays, names, mode=mode, seed=seed, num_train=num_train, num_test=num_test,
                bin_factors=bin_factors,
                on_metric=lambda name, done, n: status.update(f"computing {name} ({done}/{n} done)"),
            )  # fmt: skip
    except UserError as err:
        fail(str(err))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{file.name} ({result['num_train']} train / {result['num_test']} test)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    console.print(table)
    for name, seconds in result["seconds"].items():
        console.print(f"{name}: {seconds:.2f}s")
    for name, why in result.get("skipped", {}).items():
        console.print(f"skipped {name}: {why}")


@app.command(name="show-data")
def show_data(
    name: Annotated[str, typer.Argument(help="Dataset (study list names them) or a dotted path")],
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("data.png"),
    path: Annotated[
        Path | None, typer.Option(help="Official file or folder (default: procedural)")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Loader option KEY=VALUE, e.g. variant=toy")
    ] = None,
    subset: Annotated[
        str | None, typer.Option(help="Named subset, e.g. weak_disentanglement")
    ] = None,
    columns: Annotated[int, typer.Option()] = 10,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """One row per factor, traversed with the others fixed: look at what the models see."""
    import numpy as np
    import yaml

    from analysis.figures import factor_traversals
    from trainables import data
    from trainables.core import pictures

    options = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--option {item!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    if path is not None:
        options["path"] = str(path)
    try:
        dataset = data.subset(data.load(name, **options), subset)
        labels, images = factor_traversals(dataset, columns=columns, seed=seed)
    except UserError as err:
        fail(str(err))
    out.parent.mkdir(parents=True, exist_ok=True)
    pictures.traversals(
        images / 255.0, out, values=np.linspace(0.0, 1.0, columns), row_labels=labels,
        title=f"{name}{f' ({subset})' if subset else ''}: each factor from its first class (0) "
        "to its last (1), the others fixed",
    )  # fmt: skip
    console.print(f"wrote {out}")


@app.command()
def reproduce(
    paper: Annotated[
        str, typer.Argument(help="multitask (seed 000), modular (seed 001) or locatello (seed 002)")
    ],
    scale: Annotated[
        str, typer.Option(help="cpu (2 cores, under an hour) or paper (a cluster)")
    ] = "cpu",
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default reproduction/PAPER_SCALE)")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default local)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray")] = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Write the report from what MLflow holds")
    ] = False,
    chain_file: Annotated[
        Path | None, typer.Option("--chain", help="A chain YAML of your own (default: the paper's)")
    ] = None,
) -> None:
    """Run a paper's chain of studies in order (skipping finished steps, resuming cut ones), then
    write the reproduction report: our numbers beside the paper's and a verdict per finding."""
    from . import tracking
    from .reproduce import chain_path, load_chain, run_steps

    try:
        chain, steps = load_chain(chain_file or chain_path(paper, scale))
        if chain.paper != paper:
            raise SpecError(f"{chain_file}: paper: {chain.paper!r}, not {paper!r}")
    except UserError as err:
        fail(str(err))
    uri = resolve_tracking_uri(tracking_uri)
    out = out or Path("reproduction") / f"{paper}_{scale}"
    if not report_only:
        try:
            tracking.check_reachable(uri)
        except tracking.TrackingUnreachable as err:
            fail(str(err))
        code = run_steps(
            steps, tracking_uri=uri, storage=storage, address=address, num_cpus=num_cpus,
            say=lambda text: console.print(text, markup=False, highlight=False),
        )  # fmt: skip
        if code != 0:
            raise typer.Exit(code)
    from analysis.reproduction import write_reproduction

    try:
        written, verdicts = write_reproduction(chain, steps, uri, out)
    except UserError as err:
        fail(str(err).strip("'\""))
    for verdict in verdicts:
        line = f"{verdict.id} ({verdict.dataset}) {verdict.verdict}: {verdict.claim}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"reproduction report: {written[0]} (and {len(written) - 1} more files in {out})",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip


@app.command(name="list")
def list_registries() -> None:
    """Registered model families, datasets and metrics."""
    from trainables import FAMILIES
    from trainables.data import DATASETS
    from trainables.metrics.names import BUILTIN_METRICS, GROUP
    from trainables.registry import listed_names

    described = (f"{name} ({FAMILIES.describe(name)})" for name in FAMILIES)
    console.print("families: " + ", ".join(described))
    console.print("datasets: " + ", ".join(sorted(DATASETS)))
    console.print("metrics:  " + ", ".join(listed_names(BUILTIN_METRICS, GROUP)))


def rerun_spec(run: Any, study: str) -> dict:
    """A one-trial study YAML (as a dict) that trains ``run`` again: same family, dataset, and every
    config value as logged (seed included), so the CPU gives the same numbers."""
    from trainables import GROUND_TRUTH

    from .params import unflatten

    logged = {
        name.removeprefix("params."): value
        for name, value in run.items()
        if name.startswith("params.")
        and isinstance(value, str)
        and not name.startswith("params.upstream.")  # joined from the upstream run, not ours
    }
    params = unflatten(logged)
    dataset = params.pop("dataset", {})
    upstream = params.pop("upstream", None)
    spec = {
        "name": f"{study}_rerun_{run['run_id'][:8]}",
        "family": run["tags.family"],
        "description": f"rerun of trial {run['run_id']} of study {study}",
        "dataset": dataset,
        "fixed": params,
    }
    if upstream is not None:
        spec["source"] = (
            {"ground_truth": True} if upstream == GROUND_TRUTH else {"runs": [upstream]}
        )
    return spec
