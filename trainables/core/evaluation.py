"""The evaluation path every family shares: encoding, scoring, artifacts.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics import SAMPLED, CodeSource, GridCodes, MetricInput, get_metric, run_metrics
from . import artifacts
from .trainer import Trainer


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
        artifacts.save_matrices(matrices, data["factor_names"], artifact_dir, suffix)
        if suffix == "" and cfg.pictures:
            artifacts.draw(trainer, data, images, codes, factors, artifact_dir)
    return results
