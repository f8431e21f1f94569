"""The ``study`` command: run | resume | status | sync | best | report | reproduce | score |
show-data | list. Bad input exits 2 with one line on stderr."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import SpecError

# MLflow draws a progress bar per artifact download: noise in a command that prints its own output
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
errors = Console(stderr=True)


def _fail(message: str) -> None:
    errors.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _user_errors():
    # Imported lazily: `study --help` should not pay for torch / mlflow imports.
    from analysis.results import ResultsError
    from trainables.data import DataError

    return (SpecError, DataError, ResultsError, KeyError)


STORAGE_HELP = (
    "Ray results, checkpoints and trial journals: a folder (NFS on a cluster) or a URI "
    "(s3://, gs://, file://) every node can write"
)
MAX_TRIALS = 10_000  # a bigger sweep is more likely a typo than a plan: it needs --yes


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Study YAML, e.g. configs/quickstart.yaml")],
    name: Annotated[str | None, typer.Option(help="Study name (default: the YAML's name)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default local)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray")] = None,
    resume: Annotated[bool, typer.Option(help="Resume the latest launch of this study")] = False,
    extend: Annotated[
        bool,
        typer.Option(
            "--extend",
            help="Add search.num_samples new points to this study's earlier launches "
            "(Optuna starts from what they measured)",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help=f"Allow over {MAX_TRIALS} trials")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: fixed.epochs=2")
    ] = None,
) -> None:
    """Run a study: validate the YAML, then one Ray Tune trial per grid point (or per sampled
    point and seed), tracked in MLflow."""
    from .spec import load_spec

    overrides = list(set_ or [])
    if name:
        overrides.append(f"name={name}")
    try:
        spec = load_spec(config, overrides, max_trials=None if yes else MAX_TRIALS)
    except SpecError as err:
        _fail(str(err))
    if spec.resolved_source is not None:
        _fail(f"{config}: resolved_source: written by study run from source; remove it")
    _launch(spec, tracking_uri, storage, address, num_cpus, resume, yes, extend)


@app.command()
def resume(
    study: Annotated[str, typer.Argument(help="Study name: continue its latest launch")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default local)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray")] = None,
) -> None:
    """Continue a study's latest launch with the config it was launched with (same parent run)."""
    from .launch import latest_experiment, read_launch
    from .spec import parse_spec
    from .storage import storage_path

    try:
        previous = latest_experiment(storage_path(storage), study)
        if previous is None:
            raise SpecError(f"resume: no launch of study {study!r} under {storage}")
        record = read_launch(previous)
        spec = parse_spec(record["spec"], f"{previous.name}/study_launch.json")
    except SpecError as err:
        _fail(str(err))
    _launch(spec, tracking_uri, storage, address, num_cpus, True, True)


def _launch(
    spec, tracking_uri, storage, address, num_cpus, resume: bool, yes: bool, extend: bool = False
) -> None:
    from trainables.data import DataError

    from . import tracking
    from .launch import run_study

    if num_cpus is not None and num_cpus < 1:
        _fail(f"--num-cpus must be at least 1, got {num_cpus}")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    if spec.source is not None and spec.resolved_source is None:
        from .sources import resolve

        try:
            tracking.check_reachable(uri)
            spec = resolve(spec, uri)  # the upstream runs: an axis of the grid
        except (SpecError, tracking.TrackingUnreachable) as err:
            _fail(str(err))
    if spec.n_trials > MAX_TRIALS and not yes:
        _fail(f"the sweep has {spec.n_trials} trials (over {MAX_TRIALS}); pass --yes if meant")
    console.print(
        f"study [bold]{spec.name}[/]: family {spec.family}, {spec.n_trials} trials, tracking {uri}"
        + (" (resuming its latest launch)" if resume else "")
        + (" (extending its earlier launches)" if extend else "")
    )
    try:
        result = run_study(
            spec,
            config_text=spec_yaml(spec),
            tracking_uri=uri,
            storage=storage,
            address=address,
            num_cpus=num_cpus,
            resume=resume,
            extend=extend,
        )
    except (SpecError, DataError, tracking.TrackingUnreachable) as err:
        _fail(str(err))
    if result.interrupted:
        errors.print(
            f"interrupted ({result.interrupted}): {result.n_finished} of {result.n_trials} trials "
            f"finished, the rest and the launch marked KILLED in MLflow; continue with: "
            f"study resume {spec.name} --storage {storage} --tracking-uri {uri}",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(130)
    if result.tracking_pending:
        errors.print(
            f"error: the tracking server could not be reached at the end; when it is back, "
            f"run: study sync {spec.name} --storage {storage} --tracking-uri {uri}",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(1)
    failed = result.n_errors + result.n_diverged + result.n_misconfigured
    stopped = f"{result.n_stopped} stopped early by ASHA, " if result.n_stopped else ""
    misconfigured = (
        f"{result.n_misconfigured} without search.metric in their final report, "
        if result.n_misconfigured else ""
    )  # fmt: skip
    console.print(
        f"{'done' if not failed else 'finished with failures'}: {result.n_trials} trials, "
        f"{stopped}{result.n_errors} errors, {misconfigured}{result.n_diverged} diverged "
        f"(non-finite loss; see the runs' end_reason tag); Ray results in "
        f"{result.experiment_path}; MLflow parent run {result.parent_run_id} in {uri}"
    )
    if failed:
        raise typer.Exit(1)


@app.command()
def status(
    study: Annotated[str, typer.Argument(help="Study name")],
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
    metric: Annotated[str | None, typer.Option(help="Best by this metric (default: first)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Trials done / running / pending / failed, best so far, elapsed and time left (any shell)."""
    from .status import study_status, to_json

    try:
        state = study_status(storage, study, metric)
    except SpecError as err:
        _fail(str(err))
    if as_json:
        print(to_json(state))
        return
    counts = ", ".join(f"{n} {k.lower()}" for k, n in state.counts.items() if n)
    console.print(
        f"study [bold]{study}[/] ({state.launch}, {state.launch_status}): "
        f"{state.n_trials} trials: {counts}"
    )
    minutes = state.elapsed_s / 60
    left = f", about {state.remaining_s / 60:.0f} min left" if state.remaining_s else ""
    console.print(f"elapsed {minutes:.1f} min{left}")
    if state.best is not None:
        label = escape(state.best.label())
        console.print(f"best {state.metric}: {state.best.metric:.4f} ({label})")
    if state.extends:
        counts = ", ".join(f"{n} {k.lower()}" for k, n in state.extended_counts.items())
        console.print(
            f"extends {len(state.extends)} earlier launch(es): "
            f"{sum(state.extended_counts.values())} trials: {counts or 'none'}"
        )
        best = state.best_overall
        if best is not None:
            label = escape(best.label())
            console.print(
                f"best {state.metric} of the whole study: {best.metric:.4f} ({label}; {best.launch})"
            )
    table = Table()
    for column in ("trial", "status", "step", state.metric):
        table.add_column(column)
    for t in state.trials:
        value = "" if t.metric is None else f"{t.metric:.4f}"
        table.add_row(escape(t.label()), t.status, str(t.step or ""), value)
    console.print(table)


@app.command()
def sync(
    study: Annotated[str, typer.Argument(help="Study name")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
) -> None:
    """Send MLflow what trials journaled but could not send (a tracking outage); idempotent."""
    from . import tracking
    from .launch import sync_study

    uri = tracking.resolve_tracking_uri(tracking_uri)
    try:
        results = sync_study(study, uri, storage)
    except (SpecError, tracking.TrackingUnreachable) as err:
        _fail(str(err))
    incomplete = 0
    for r in results:
        incomplete += r.trials_failing + (not r.launch_closed)
        console.print(
            f"{r.launch}: {r.trials} trials, {r.records_sent} records sent"
            + (f", {r.trials_failing} trials still unsent" if r.trials_failing else "")
            + ("" if r.launch_closed else ", launch not ended")
        )
    if incomplete:
        errors.print("error: tracking is still incomplete; run `study sync` again")
        raise typer.Exit(1)


def spec_yaml(spec) -> str:
    """The effective config (after --set), as the parent run logs it."""
    import yaml

    return yaml.safe_dump(json.loads(spec.model_dump_json()), sort_keys=False)


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
    from analysis.results import filter_runs, load_runs, rerun_spec, varying_params
    from analysis.tables import best_runs

    from . import tracking

    if mode not in (None, "max", "min"):
        _fail(f"--mode must be 'max' or 'min', got {mode!r}")
    try:
        runs = load_runs(tracking.resolve_tracking_uri(tracking_uri), study)
        runs = filter_runs(runs, where or "")
        ranked = best_runs(runs, metric, mode, top)
    except _user_errors() as err:
        _fail(str(err).strip("'\""))
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

    from . import tracking

    try:
        written = write_report(tracking.resolve_tracking_uri(tracking_uri), study, out, cache=cache)
    except _user_errors() as err:
        _fail(str(err).strip("'\""))
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
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Score plain arrays with the disentanglement metrics (no model, no Ray, no MLflow)."""
    from trainables.metrics import MODES
    from trainables.metrics.scoring import load_arrays, score_arrays

    if mode is not None and mode not in MODES:
        _fail(f"--mode must be one of {list(MODES)}, got {mode!r}")
    names = [m.strip() for m in metrics.split(",")] if metrics else None
    try:
        arrays = load_arrays(file)
        with console.status("computing metrics") as status:
            result = score_arrays(
                arrays, names, mode=mode, seed=seed, num_train=num_train, num_test=num_test,
                on_metric=lambda name, done, n: status.update(f"computing {name} ({done}/{n} done)"),
            )  # fmt: skip
    except ValueError as err:
        _fail(str(err))
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
    name: Annotated[str, typer.Argument(help="Dataset: dsprites, shapes3d, mpi3d")],
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("data.png"),
    path: Annotated[Path | None, typer.Option(help="Official file (default: procedural)")] = None,
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
    from trainables import data, pictures

    options = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--option {item!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    if path is not None:
        options["path"] = str(path)
    try:
        dataset = data.subset(data.load(name, **options), subset)
        labels, images = factor_traversals(dataset, columns=columns, seed=seed)
    except data.DataError as err:
        _fail(str(err))
    out.parent.mkdir(parents=True, exist_ok=True)
    pictures.traversals(
        images / 255.0, out, values=np.linspace(0.0, 1.0, columns), row_labels=labels,
        title=f"{name}{f' ({subset})' if subset else ''}: each factor from its first class (0) "
        "to its last (1), the others fixed",
    )  # fmt: skip
    console.print(f"wrote {out}")


@app.command()
def reproduce(
    paper: Annotated[str, typer.Argument(help="multitask (seed 000) or modular (seed 001)")],
    scale: Annotated[str, typer.Option(help="cpu (2 cores, under an hour) or paper (a cluster)")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Report folder (default reproduction/PAPER_SCALE)")] = None,
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
    except SpecError as err:
        _fail(str(err))
    uri = tracking.resolve_tracking_uri(tracking_uri)
    out = out or Path("reproduction") / f"{paper}_{scale}"
    if not report_only:
        try:
            tracking.check_reachable(uri)
        except tracking.TrackingUnreachable as err:
            _fail(str(err))
        code = run_steps(
            steps, tracking_uri=uri, storage=storage, address=address, num_cpus=num_cpus,
            say=lambda text: console.print(text, markup=False, highlight=False),
        )  # fmt: skip
        if code != 0:
            raise typer.Exit(code)
    from analysis.reproduction import write_reproduction

    try:
        written, verdicts = write_reproduction(chain, steps, uri, out)
    except _user_errors() as err:
        _fail(str(err).strip("'\""))
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
    from trainables.metrics import METRICS

    console.print("families: " + ", ".join(f"{k} ({v.description})" for k, v in FAMILIES.items()))
    console.print("datasets: " + ", ".join(sorted(DATASETS)))
    console.print("metrics:  " + ", ".join(sorted(METRICS)))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        errors.print("interrupted; continue a study with `study resume NAME`")
        sys.exit(130)


if __name__ == "__main__":
    main()
