"""The data view a study trains on: rendered once on the driver, split, shared by every trial.

Also the two small conversions every trial needs first: a device name to a ``torch.device`` and a
(possibly read-only, object-store backed) numpy array to a tensor without a copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from ..data import tasks as _tasks  # noqa: F401 (datasets.tasks below)
from ..metrics import get_metric
from .config import DatasetConfig

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
    # By row, not by class: a dataset of stored rows (not a grid) cannot render a class vector.
    images = np.concatenate(
        [
            dataset.row_images(index[i : i + _RENDER_CHUNK])
            for i in range(0, len(index), _RENDER_CHUNK)
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
        # Class names of nominal factors scored as they are (pictures name their classes).
        "factor_categories": {
            name: list(dataset.categories[name])
            for name, size in zip(dataset.label_names, dataset.label_sizes, strict=True)
            if len(dataset.categories.get(name, ())) == size
        },
        "images": images,  # uint8 (N, C, 64, 64)
        "factors": dataset.labels(classes),  # int64 (N, K): scored labels (bins, no nuisance)
        # Rows are the scored grid in official order: sampling metrics can fix factors.
        "full_grid": cfg.n_samples is None and dataset.is_plain and dataset.is_grid,
        # Task inputs: values of the scored factors, each rescaled to [-1, 1].
        "inputs": datasets.tasks.normalised_inputs(dataset, classes)[:, dataset.relevant],
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
        # int64 (N,): each row's row in the loaded dataset (before the subset), e.g. to find a
        # user's per-row codes given in the dataset's own order.
        "rows": dataset.base_rows(index),
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
    scored factors as its classes (no sampling, no bins, no nuisance factors), so a dataset of
    rows that are not the whole grid (``is_grid`` false) cannot feed them at all.
    """
    needing = [m for m in metrics if get_metric(m).needs_source]
    if not needing:
        return None
    dataset = datasets.load(cfg.name, **cfg.options)
    if not dataset.is_grid:  # before n_samples: unsetting it would not help
        why = getattr(dataset, "why_not_grid", f"{dataset.name} is not a factor grid")
        return f"{needing} need the whole factor grid: {why}; the other metrics run on any rows"
    if cfg.n_samples is not None:
        return f"{needing} need the whole factor grid: unset dataset.n_samples"
    view = datasets.subset(dataset, cfg.subset)
    if not view.is_plain:
        return f"{needing} need the plain factor grid: the subset bins factors or has nuisance ones"
    return None
