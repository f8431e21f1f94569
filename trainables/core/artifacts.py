"""Pictures and matrices every trial writes beside its scores (PNG and .npy, logged to MLflow).

Scalars say how much a representation is disentangled; these say which code holds which factor
(importance and mutual-information heatmaps), what each code does to the image (traversals), whether
the decoder keeps detail (reconstructions) and how the factors lie in code space (UMAP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import pictures
from .trainer import Trainer

MATRIX_TITLES = {
    "dci_importance": "DCI importance (boosted trees)",
    "mig_mutual_information": "mutual information (nats, 20 bins)",
}
N_RECONSTRUCTIONS = 16
TRAVERSAL_STEP = 0.1  # the multi-task paper's traversals: each code from -1 to 1 in steps of 0.1


def save_matrices(
    matrices: dict[str, np.ndarray], factor_names: list[str], directory: Path, suffix: str = ""
) -> None:
    """Each (n_codes, n_factors) matrix as ``<name><suffix>.npy`` and a heatmap PNG."""
    for name, matrix in matrices.items():
        np.save(directory / f"{name}{suffix}.npy", matrix)
        pictures.matrix_heatmap(
            matrix,
            directory / f"{name}{suffix}.png",
            row_labels=[f"z{i}" for i in range(matrix.shape[0])],
            col_labels=list(factor_names),
            title=MATRIX_TITLES.get(name, name) + (" - sampled codes" if suffix else ""),
        )


def picture_rows(test: np.ndarray, n: int = N_RECONSTRUCTIONS) -> np.ndarray:
    """``n`` rows spread evenly over the test split. Its rows are in grid order, so its first
    ``n`` would all show the first factors' first values (one shape at its smallest scale)."""
    test = np.asarray(test)
    return test[np.unique(np.linspace(0, len(test) - 1, n).round().astype(int))]


@torch.no_grad()
def draw(
    trainer: Trainer,
    data: dict[str, Any],
    images: torch.Tensor,
    codes: np.ndarray,
    factors: np.ndarray,
    directory: Path,
) -> None:
    """UMAP of the evaluation codes (every family); reconstructions and traversals (decoders)."""
    cfg = trainer.cfg
    pictures.umap_embedding(
        codes[: cfg.metric_train_points],
        factors[: cfg.metric_train_points],
        list(data["factor_names"]),
        directory / "umap.png",
        max_points=cfg.umap_points,
        seed=cfg.seed,
        categories=data.get("factor_categories"),
    )
    own = getattr(trainer, "draw_pictures", None)  # a family's own pictures (modular: relations)
    if own is not None:
        own(data, directory)
    rows = torch.as_tensor(picture_rows(data["test"]), device=images.device)
    x = images[rows].float().div_(255.0)
    mean, _ = trainer.encode_rows(rows)
    decoded = trainer.decode(mean)
    if decoded is None:
        return
    pictures.reconstructions(
        x.cpu().numpy(), decoded.cpu().numpy(), directory / "reconstructions.png",
        title=f"{trainer.name}: test images and their reconstructions (code means)",
    )  # fmt: skip
    middle = len(mean) // 2
    base = mean[middle : middle + 1]  # (1, D): a test image's code; each row moves one dimension
    spread = codes.std(axis=0)
    centre = codes.mean(axis=0)
    fixed = pictures.traversal_values(-1.0, 1.0, TRAVERSAL_STEP)
    relative = pictures.traversal_values(-2.0, 2.0, 0.2)
    for name, values_of, label in (
        ("traversals.png", lambda d: fixed, "each code from -1 to 1, the others fixed"),
        (
            "traversals_std.png",
            lambda d: centre[d] + relative * spread[d],
            "each code over its mean +- 2 std on the evaluation codes, the others fixed",
        ),
    ):
        rows = []
        for d in range(base.shape[1]):
            z = base.repeat(len(fixed), 1)  # (n_values, D)
            z[:, d] = torch.as_tensor(values_of(d), dtype=z.dtype, device=z.device)
            rows.append(trainer.decode(z).cpu().numpy())  # (n_values, C, 64, 64)
        pictures.traversals(
            np.stack(rows),
            directory / name,
            values=fixed if name == "traversals.png" else relative,
            row_labels=[f"z{d} (std {spread[d]:.2f})" for d in range(base.shape[1])],
            title=f"{trainer.name}: {label}" + ("" if name == "traversals.png" else " (x std)"),
        )
