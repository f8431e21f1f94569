"""Shared pieces of every family: the prepared data view, encoding, and scoring representations."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from . import data as datasets
from ._config import DatasetConfig
from .metrics import CodeSource, MetricInput, get_metric

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


@torch.no_grad()
def encode(
    encoder: torch.nn.Module, images: torch.Tensor, index: np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """Codes of ``images[index]`` (uint8 tensor), float64 (len(index), D)."""
    encoder.eval()
    out = []
    for start in range(0, len(index), batch_size):
        batch = torch.as_tensor(index[start : start + batch_size], device=images.device)
        out.append(encoder(images[batch].float().div_(255.0)).double().cpu().numpy())
    return np.concatenate(out)


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
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Registered metrics on codes, split into the first ``n_train`` rows and the rest.

    Also returns ``metric_seconds_<name>`` per metric: the metric time logged per trial.
    """
    results: dict[str, float] = {}
    inputs = MetricInput(
        codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:],
        rng=rng, source=source, n_jobs=n_jobs, mode=mode,
    )  # fmt: skip
    for name in metrics:
        if progress is not None:
            progress(name)
        started = time.perf_counter()
        results.update(get_metric(name).evaluate(inputs))
        results[f"metric_seconds_{name}"] = time.perf_counter() - started
    return results
