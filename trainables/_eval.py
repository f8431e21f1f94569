"""The evaluation path every family shares: the prepared data view, encoding, scoring, artifacts.

``evaluate`` samples the metric points (with replacement, as disentanglement_lib does), encodes them
(the mean and, for stochastic encoders, a sample: both scored, the sample's names end in
``_sampled``), reads them from the encoded grid where sampling metrics (FactorVAE, BetaVAE) need one,
saves exactly the scored rows as ``codes.npz`` (with the metric RNG state, so ``study score`` on the
file reproduces the logged values), scores them, and saves the DCI importance and MIG mutual-
information matrices (``.npy`` and a heatmap) and the pictures.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import data as datasets
from ._config import DatasetConfig
from .data import tasks as _tasks  # noqa: F401 (datasets.tasks below)
from .metrics import SAMPLED, CodeSource, GridCodes, MetricInput, get_metric, run_metrics

if TYPE_CHECKING:
    from .loop import Trainer

_RENDER_CHUNK = 8192
MAX_GRID_ROWS = 2_000_000  # a whole-grid view larger than this must set n_samples


def prepare_view(cfg: DatasetConfig) -> dict[str, Any]:
    """Render the study's images once (driver side) and split them: a dict of numpy arrays."""
    dataset = datasets.subset(datasets.load(cfg.name, **cfg.options), cfg.subset)
    rng = np.random.default_rng(cfg.split_seed)
    if cfg.n_samples is None:
        if dataset.num_samples > MAX_GRID_ROWS:
            raise datasets.DataError(
                f"dataset.n_samples: the {cfg.name} view has {dataset.num_samples} images; "
                "set dataset.n_samples or a subset"
            )
        index = np.arange(dataset.num_samples)
    else:
        if cfg.n_samples > dataset.num_samples:
            raise datasets.DataError(
                f"dataset.n_samples={cfg.n_samples} exceeds the {dataset.num_samples} images "
                "of the view"
            )
        index = np.sort(rng.choice(dataset.num_samples, cfg.n_samples, replace=False))
    classes = dataset.index_to_classes(index)
    images = np.concatenate(
        [
            dataset.images(classes[i : i + _RENDER_CHUNK])
            for i in range(0, len(classes), _RENDER_CHUNK)
        ]
    )
    order = rng.permutation(len(index))
    n_train = int(round(cfg.split[0] * len(index)))
    n_val = int(round(cfg.split[1] * len(index)))
    sizes = (n_train, n_val, len(index) - n_train - n_val)
    if min(sizes) < 1:
        raise datasets.DataError(
            f"dataset.split: {list(cfg.split)} of {len(index)} images leaves an empty split "
            f"(train / val / test = {sizes})"
        )
    return {
        "dataset": cfg.name,
        "factor_names": list(dataset.label_names),
        "factor_sizes": list(dataset.label_sizes),
        "images": images,  # uint8 (N, C, 64, 64)
        "factors": dataset.labels(classes),  # int64 (N, K): scored labels (bins, no nuisance)
        # Rows are the scored grid in official order: sampling metrics can fix factors.
        "full_grid": cfg.n_samples is None and dataset.is_plain,
        # Task inputs: values of the scored factors, each rescaled to [-1, 1].
        "inputs": datasets.tasks.normalised_inputs(dataset, classes)[:, dataset.relevant],
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def as_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Zero-copy tensor over a (possibly read-only, object-store backed) numpy array."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only buffers: we never write them
        return torch.from_numpy(array).to(device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def sampling_metrics_refusal(cfg: DatasetConfig, metrics: Sequence[str]) -> str | None:
    """Why ``metrics`` cannot run on this data view (None if they can), without rendering it.

    FactorVAE and BetaVAE fix one factor and vary the others: they need every grid point with the
    scored factors as its classes (no sampling, no bins, no nuisance factors).
    """
    needing = [m for m in metrics if get_metric(m).needs_source]
    if not needing:
        return None
    if cfg.n_samples is not None:
        return f"{needing} need the whole factor grid: unset dataset.n_samples"
    view = datasets.subset(datasets.load(cfg.name, **cfg.options), cfg.subset)
    if not view.is_plain:
        return f"{needing} need the plain factor grid: the subset bins factors or has nuisance ones"
    return None


@torch.no_grad()
def encode(
    encode_rows: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
    index: np.ndarray,
    device: torch.device,
    batch_size: int = 512,
    *,
    sample_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes of the rows ``index`` through ``encode_rows`` (a ``Trainer.encode_rows``: row indices
    on ``device`` -> (mean, std or None)): float64 (len(index), D) means, and samples of the code
    distribution (None for a deterministic encoder), drawn from a generator seeded by
    ``sample_seed`` so the sampled representation is reproducible."""
    generator = torch.Generator(device=device).manual_seed(sample_seed)
    means, samples = [], []
    for start in range(0, len(index), batch_size):
        batch = torch.as_tensor(index[start : start + batch_size], device=device)
        mean, std = encode_rows(batch)
        means.append(mean.double().cpu().numpy())
        if std is not None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device)
            samples.append((mean + std * noise).double().cpu().numpy())  # (B, D)
    return np.concatenate(means), (np.concatenate(samples) if samples else None)


def score(
    codes: np.ndarray,
    factors: np.ndarray,
    metrics: Sequence[str],
    *,
    n_train: int,
    rng: np.random.Generator,
    n_jobs: int = 1,
    mode: str = "reference",
    source: CodeSource | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    matrices: dict[str, np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Registered metrics on codes, split into the first ``n_train`` rows and the rest.

    Also returns ``metric_seconds_<name>`` per metric: the metric time logged per trial. Matrices
    the metrics expose (DCI importance, MIG mutual information) go into ``matrices`` when given.
    """
    inputs = MetricInput(
        codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:],
        rng=rng, source=source, n_jobs=n_jobs, mode=mode, options=dict(options or {}),
    )  # fmt: skip
    results, seconds = run_metrics(metrics, inputs, progress)
    results.update({f"metric_seconds_{name}": s for name, s in seconds.items()})
    if matrices is not None:
        matrices.update(inputs.matrices)
    return results


def save_codes(
    path: Path,
    codes: np.ndarray,
    factors: np.ndarray,
    n_train: int,
    rng: np.random.Generator,
    cfg: Any,
    grid: tuple[np.ndarray, Sequence[int]] | None,
) -> None:
    """Exactly the scored rows, and what ``study score`` needs to reproduce the scores."""
    extra: dict[str, np.ndarray] = {}
    if grid is not None:
        extra = {"grid_codes": grid[0], "factor_sizes": np.asarray(grid[1])}
    np.savez_compressed(
        path,
        codes=codes[:n_train],
        factors=factors[:n_train],
        codes_test=codes[n_train:],
        factors_test=factors[n_train:],
        rng_state=np.array(json.dumps(rng.bit_generator.state)),
        metrics=np.array(cfg.metrics),
        metric_mode=np.array(cfg.metric_mode),
        metric_options=np.array(json.dumps(cfg.metric_options)),
        **extra,
    )


def evaluate(
    trainer: Trainer, data: dict[str, Any], images: torch.Tensor, artifact_dir: Path
) -> dict[str, float]:
    """Score the trained representation; write codes, matrices and pictures under artifact_dir."""
    from . import _artifacts

    cfg = trainer.cfg
    rng = np.random.default_rng(cfg.seed)
    n_points = cfg.metric_train_points + cfg.metric_test_points
    sample = rng.integers(0, len(data["factors"]), n_points)  # with replacement, as the reference
    factors = data["factors"][sample]
    needs_grid = any(get_metric(name).needs_source for name in cfg.metrics)
    if needs_grid and not data["full_grid"]:
        raise ValueError(
            "factor_vae / beta_vae need the whole plain factor grid: unset dataset.n_samples "
            "and use no bins or nuisance factors"
        )
    # The grid in official order: one code per grid point serves every vote, and the array
    # metrics' sample is read from the same table instead of encoded again.
    rows = np.arange(len(images)) if needs_grid else sample
    encoded = encode(trainer.encode_rows, rows, images.device, sample_seed=cfg.seed)
    tables = {"": encoded[0], SAMPLED: encoded[1]}
    results: dict[str, float] = {}
    for suffix, table in tables.items():
        if table is None:
            continue
        metric_rng = copy.deepcopy(rng)  # mean and sample: the same metric randomness
        codes = table[sample] if needs_grid else table
        grid = (table, data["factor_sizes"]) if needs_grid else None
        save_codes(
            artifact_dir / f"codes{suffix}.npz",
            codes, factors, cfg.metric_train_points, metric_rng, cfg, grid,
        )  # fmt: skip
        matrices: dict[str, np.ndarray] = {}
        scores = score(
            codes,
            factors,
            cfg.metrics,
            n_train=cfg.metric_train_points,
            rng=metric_rng,
            n_jobs=torch.get_num_threads(),  # the trial's CPU share, not the whole node
            mode=cfg.metric_mode,
            source=GridCodes(*grid) if grid else None,
            options=cfg.metric_options,
            matrices=matrices,
        )
        results.update({f"{k}{suffix}": v for k, v in scores.items()})
        _artifacts.save_matrices(matrices, data["factor_names"], artifact_dir, suffix)
        if suffix == "" and cfg.pictures:
            _artifacts.draw(trainer, data, images, codes, factors, artifact_dir)
    return results
