"""Score plain arrays (``study score FILE.npz``): codes and factor classes, no model needed.

File keys: ``codes`` (N, D), ``factors`` (N, K) int, optional ``codes_test`` / ``factors_test``.
Without test arrays, train = the first ``num_train`` rows and test = the next ``num_test``; when the
file has fewer than 15,000 rows and no sizes are given, the first two thirds train and the rest test.
When the rows are exactly the factor grid in official order (last factor fastest), train and test
points are instead sampled from the grid with replacement (10,000 / 5,000 by default), and FactorVAE
and BetaVAE run on it (they must fix one factor and vary the others).

A trial's ``codes.npz`` also holds what reproduces its logged scores: ``metrics``, ``metric_mode``,
``metric_options``, the metric RNG state ``rng_state`` and, where sampling metrics ran,
``grid_codes`` and ``factor_sizes``; those are used unless the caller overrides them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import METRICS, GridCodes, MetricInput, get_metric, grid_covered, run_metrics

DEFAULT_METRICS = ("mig", "sap", "dci", "modularity", "unsupervised", "factor_vae", "beta_vae")


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz ({exc})") from None
    missing = {"codes", "factors"} - set(arrays)
    if missing:
        raise InputError(f"{path}: missing key(s) {sorted(missing)}; has {sorted(arrays)}")
    if ("codes_test" in arrays) != ("factors_test" in arrays):
        raise InputError(f"{path}: give both codes_test and factors_test, or neither")
    return arrays


def factor_classes(
    factors: np.ndarray, bins: int | None = None, key: str = "factors"
) -> np.ndarray:
    """Factor values as the metrics take them: integer classes per column.

    Whole numbers (of any dtype) are their classes. Other values are refused, unless ``bins``:
    then each such column is cut into ``bins`` equal-width bins over its range (the histogram
    discretisation disentanglement_lib applies to codes), and whole-number columns stay as they
    are. Classes are what the metrics count; bins of a continuous factor are a choice the
    reader should see, so it is never made silently.
    """
    values = np.asarray(factors)
    if values.ndim == 1:
        values = values[:, None]
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind != "f" or not np.isfinite(values).all():
        raise InputError(f"{key}: needs finite numbers, got dtype {values.dtype}")
    whole = np.all(values == np.round(values), axis=0)
    if whole.all():
        return values.astype(np.int64)
    column = int(np.argmin(whole))
    if bins is None:
        example = values[np.argmax(values[:, column] != np.round(values[:, column])), column]
        raise InputError(
            f"{key}: column {column} holds values that are not classes (e.g. {example:g}); give "
            "each factor's class index (np.unique(column, return_inverse=True)[1] for a discrete "
            "factor), or --bin-factors N to cut each continuous factor into N equal-width bins"
        )
    if bins < 2:
        raise InputError(f"--bin-factors must be at least 2, got {bins}")
    out = np.empty(values.shape, dtype=np.int64)
    for k in range(values.shape[1]):
        if whole[k]:
            out[:, k] = values[:, k]
            continue
        edges = np.histogram_bin_edges(values[:, k], bins=bins)
        out[:, k] = np.digitize(values[:, k], edges[1:-1])
    return out


def score_arrays(
    arrays: dict[str, np.ndarray],
    metrics: list[str] | None = None,
    *,
    mode: str | None = None,
    seed: int | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    n_jobs: int = -1,
    on_metric: Callable[[str, int, int], None] | None = None,
    bin_factors: int | None = None,
) -> dict[str, object]:
    """``on_metric(running, done, total)`` is called as metrics start and end (progress display):
    ``running`` names the metrics running (comma-separated; two at once with more than one job),
    ``done`` counts those finished."""
    recorded = "metrics" in arrays  # a trial's codes artifact: defaults reproduce its scores
    asked = bool(metrics)  # named by the user: one that cannot run is an error, not a skip
    metrics = list(metrics or (arrays["metrics"].tolist() if recorded else DEFAULT_METRICS))
    for name in metrics:
        get_metric(name)
    if mode is None:
        mode = str(arrays["metric_mode"]) if "metric_mode" in arrays else "reference"
    options = json.loads(str(arrays["metric_options"])) if "metric_options" in arrays else {}
    codes = np.asarray(arrays["codes"], float)
    factors = factor_classes(arrays["factors"], bin_factors)
    if len(codes) != len(factors):
        raise InputError(f"codes have {len(codes)} rows but factors have {len(factors)}")
    rng = np.random.default_rng(seed or 0)
    if seed is None and "rng_state" in arrays:
        rng.bit_generator.state = json.loads(str(arrays["rng_state"]))
    if "grid_codes" in arrays:
        source = GridCodes(np.asarray(arrays["grid_codes"], float), arrays["factor_sizes"].tolist())
    else:
        sizes = grid_covered(factors)
        source = GridCodes(codes, sizes) if sizes else None
    if "codes_test" in arrays:
        train = (codes[:num_train], factors[:num_train])
        test = (
            np.asarray(arrays["codes_test"], float),
            factor_classes(arrays["factors_test"], bin_factors, "factors_test"),
        )
        test = (test[0][:num_test], test[1][:num_test])
    elif source is not None and "grid_codes" not in arrays:
        # Rows are the grid in order (the first rows share the slow factors): sample points from
        # the grid with replacement, as disentanglement_lib samples from a dataset.
        num_train, num_test = num_train or 10_000, num_test or 5_000
        rows = rng.integers(0, len(codes), num_train + num_test)
        train = (codes[rows[:num_train]], factors[rows[:num_train]])
        test = (codes[rows[num_train:]], factors[rows[num_train:]])
    else:
        if num_train is None and num_test is None and len(codes) < 15_000:
            num_train = int(np.ceil(2 * len(codes) / 3))
            num_test = len(codes) - num_train
        num_train, num_test = num_train or 10_000, num_test or 5_000
        if num_train + num_test > len(codes):
            raise InputError(
                f"--num-train {num_train} + --num-test {num_test} exceed the {len(codes)} rows"
            )
        train = (codes[:num_train], factors[:num_train])
        test = (codes[num_train : num_train + num_test], factors[num_train : num_train + num_test])
    skipped = [m for m in metrics if METRICS[m].needs_source and source is None]
    if asked and skipped:
        raise InputError(
            f"{', '.join(skipped)} fix one factor and vary the others: the rows must cover the "
            "whole factor grid (give grid_codes and factor_sizes, as a trial's codes.npz does)"
        )
    inputs = MetricInput(
        *train, *test, rng=rng, source=source, n_jobs=n_jobs, mode=mode, options=options
    )
    to_run = [m for m in metrics if m not in skipped]
    running: list[str] = []
    done = 0
    lock = threading.Lock()  # metrics may run on two threads at once (run_metrics)

    def progress(name: str, starting: bool) -> None:
        nonlocal done
        with lock:
            if starting:
                running.append(name)
            else:
                running.remove(name)
                done += 1
            text, count = ", ".join(running), done
        if on_metric and text:  # nothing running after the last end: nothing to show
            on_metric(text, count, len(to_run))

    result: dict[str, object] = {}
    scores, seconds = run_metrics(
        to_run, inputs, lambda name: progress(name, True), lambda name: progress(name, False)
    )
    result.update(scores)
    result["seconds"] = {name: round(s, 4) for name, s in seconds.items()}
    result["num_train"], result["num_test"] = len(train[0]), len(test[0])
    if skipped:
        result["skipped"] = {m: "rows do not cover the factor grid" for m in skipped}
    return result
