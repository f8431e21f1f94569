"""PNG pictures a trial logs as MLflow artifacts, meant to be read by a person.

Numbers such as MIG or DCI say *how much* a representation is disentangled; pictures say *how*:
which code dimension moves which part of the image (latent traversals), whether the decoder keeps
detail (reconstructions), how factors are laid out in code space (a UMAP embedding coloured per
factor), and which code explains which factor (heatmaps of importance / mutual information).

Every function takes numpy arrays and a path, writes one PNG there and returns the path. Images
are float arrays in [0, 1] shaped ``(N, C, H, W)`` with ``C`` in {1, 3}; one channel is drawn in
grey. Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas, never pyplot:
trials may run in threads of one process, and pyplot keeps global state (the current figure,
the backend) that is neither thread-safe nor freed unless closed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "embed",
    "matrix_heatmap",
    "reconstructions",
    "save_png",
    "traversal_values",
    "traversals",
    "umap_embedding",
]

_BORDER = 0.55  # grey frame drawn round every image, so black or white images stay visible
_GAP = 1.0  # white space between framed images
_MAX_PAIRS = 16
_PAIRS_PER_ROW = 8
_TRAVERSAL_CELL_IN = 0.6
_TRAVERSAL_MAX_WIDTH_IN = 14.0
_TRAVERSAL_LABEL_IN = 1.4  # left margin for row labels such as "z12" over "(KL 3.21)"
_MAX_ANNOTATED_CELLS = 400
_MIN_EMBED_ROWS = 5


def save_png(fig: Figure, path: str | Path, *, dpi: float | None = None) -> Path:
    """Render ``fig`` to a PNG at ``path`` (parents created) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        FigureCanvasAgg(fig)  # attach an Agg canvas explicitly: no backend lookup, no pyplot
        fig.savefig(path, format="png", dpi=dpi if dpi is not None else fig.dpi)
    finally:
        fig.clear()  # drop artists (and the arrays they hold) even when saving failed
    return path


# --------------------------------------------------------------------------------------------
# image mosaics


def as_images(images: np.ndarray, name: str) -> np.ndarray:
    """Validate an ``(N, C, H, W)`` batch and return it as float ``(N, H, W, 3)`` in [0, 1]."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be shaped (N, C, H, W) with C in {{1, 3}}, got {arr.shape}")
    arr = np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0)
    arr = np.moveaxis(arr, 1, -1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def _mosaic(cells: np.ndarray) -> np.ndarray:
    """Tile ``(R, K, H, W, 3)`` images into one RGB array, each framed and separated by a gap."""
    n_rows, n_cols, h, w, _ = cells.shape
    ch, cw = h + 2, w + 2  # image plus one-pixel frame
    canvas = np.full((n_rows * (ch + 1) + 1, n_cols * (cw + 1) + 1, 3), _GAP)
    for r in range(n_rows):
        for k in range(n_cols):
            top, left = 1 + r * (ch + 1), 1 + k * (cw + 1)
            canvas[top : top + ch, left : left + cw] = _BORDER
            canvas[top + 1 : top + 1 + h, left + 1 : left + 1 + w] = cells[r, k]
    return canvas


def _no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def reconstructions(
    inputs: np.ndarray, outputs: np.ndarray, path: str | Path, *, title: str = ""
) -> Path:
    """Up to 16 inputs (upper row of each block) above their reconstructions (lower row)."""
    if np.shape(inputs) != np.shape(outputs):
        raise ValueError(
            f"inputs and outputs differ in shape: {np.shape(inputs)} vs {np.shape(outputs)}"
        )
    x = as_images(inputs, "inputs")[:_MAX_PAIRS]
    y = as_images(outputs, "outputs")[:_MAX_PAIRS]
    n = len(x)
    if n == 0:
        raise ValueError("no images to draw")
    per_row = min(_PAIRS_PER_ROW, n)
    n_blocks = math.ceil(n / per_row)
    h, w = x.shape[1:3]
    # pad the last block with white so every strip has the same width and the columns align
    blank = np.ones((n_blocks * per_row - n, h, w, 3))
    x = np.concatenate([x, blank]).reshape(n_blocks, per_row, h, w, 3)
    y = np.concatenate([y, blank]).reshape(n_blocks, per_row, h, w, 3)

    cell_in = float(np.clip(w / 80, 0.5, 1.0))  # about native resolution at 100 dpi
    fig = Figure(figsize=(1.2 + per_row * cell_in, 0.4 + 2.1 * n_blocks * cell_in * h / w), dpi=100)
    fig.subplots_adjust(left=1.2 / (1.2 + per_row * cell_in), right=0.99, bottom=0.02, top=0.9)
    axes = fig.subplots(2 * n_blocks, 1, squeeze=False)[:, 0]
    for b in range(n_blocks):
        rows = ((axes[2 * b], x[b], "input"), (axes[2 * b + 1], y[b], "reconstruction"))
        for ax, strip, label in rows:
            ax.imshow(_mosaic(strip[None]), interpolation="nearest")
            _no_ticks(ax)
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, path)


# --------------------------------------------------------------------------------------------
# latent traversals


def traversal_values(low: float, high: float, step: float) -> np.ndarray:
    """``low, low + step, ..., high`` with both ends included and no float drift.

    Values are computed as ``low + k * step`` (not by repeated addition) and rounded to ten
    decimals, so ``(-1, 1, 0.1)`` gives 21 values whose middle one is exactly ``0.0``.
    """
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    if high < low:
        raise ValueError(f"high ({high}) is below low ({low})")
    n = math.floor((high - low) / step + 1e-9) + 1
    values = np.round(low + step * np.arange(n), 10) + 0.0  # "+ 0.0" turns -0.0 into 0.0
    if math.isclose(values[-1], high, rel_tol=0.0, abs_tol=1e-9 * max(1.0, abs(step))):
        values[-1] = high
    return values


def _value_label(v: float) -> str:
    text = f"{round(float(v), 3) + 0.0:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def traversals(
    grid: np.ndarray,
    path: str | Path,
    *,
    values: np.ndarray,
    row_labels: list[str],
    title: str = "",
) -> Path:
    """Row ``r``: decoded images as code dimension ``r`` moves over ``values``, others fixed.

    ``grid`` is ``(n_rows, n_values, C, H, W)``. Drawn as one image with ticks for values and
    row labels, which keeps a 10 x 21 grid legible at a few hundred kilobytes.
    """
    arr = np.asarray(grid)
    if arr.ndim != 5:
        raise ValueError(f"grid must be shaped (rows, values, C, H, W), got {arr.shape}")
    n_rows, n_values = arr.shape[:2]
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) != n_values:
        raise ValueError(f"{len(values)} values for {n_values} grid columns")
    if len(row_labels) != n_rows:
        raise ValueError(f"{len(row_labels)} row labels for {n_rows} grid rows")
    if n_rows == 0 or n_values == 0:
        raise ValueError("empty traversal grid")
    h, w = arr.shape[3:5]
    cells = as_images(arr.reshape(n_rows * n_values, *arr.shape[2:]), "grid")
    mosaic = _mosaic(cells.reshape(n_rows, n_values, h, w, 3))

    cell_in = min(_TRAVERSAL_CELL_IN, (_TRAVERSAL_MAX_WIDTH_IN - _TRAVERSAL_LABEL_IN) / n_values)
    header_in = 0.9 if title else 0.6
    width_in = _TRAVERSAL_LABEL_IN + n_values * cell_in + 0.1
    height_in = header_in + n_rows * cell_in * h / w + 0.1
    fig = Figure(figsize=(width_in, height_in), dpi=90)
    ax = fig.add_axes(
        (
            _TRAVERSAL_LABEL_IN / width_in,
            0.1 / height_in,
            n_values * cell_in / width_in,
            n_rows * cell_in * h / w / height_in,
        )
    )
    # "antialiased" because a 64 px image shrinks to ~50 px; nearest would alias thin strokes
    ax.imshow(mosaic, interpolation="antialiased", aspect="auto")
    col_centres = 1 + (w + 3) * np.arange(n_values) + (w + 2) / 2
    row_centres = 1 + (h + 3) * np.arange(n_rows) + (h + 2) / 2
    # Labels stay legible when a report shows the picture at half size: 11 pt rows, a label
    # ("z3" over "std 1.05") on two lines where rows are tall enough; upright value labels, every column only when there
    # is room (about 0.5 in a label), otherwise first, middle, last and evenly between.
    stride = 1 if cell_in >= 0.5 else math.ceil(0.5 / cell_in)
    ends = (0, n_values - 1)
    between = {*range(stride, n_values - 1, stride), n_values // 2}
    shown = sorted({*ends, *(i for i in between if min(abs(i - e) for e in ends) >= stride)})
    ax.xaxis.tick_top()
    ax.set_xticks(col_centres[shown], [_value_label(values[i]) for i in shown])
    ax.tick_params(axis="x", labelsize=10, length=3)
    row_in = cell_in * h / w
    two_lines = row_in >= 0.45  # room for 2 x 11 pt; else one line sized to the row
    ax.set_yticks(
        row_centres, [label.replace(" (", "\n(", 1) if two_lines else label for label in row_labels]
    )
    ax.tick_params(axis="y", labelsize=11 if two_lines else min(11, 0.7 * row_in * 72), length=2)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=12, y=1 - 0.05 / height_in, va="top")
    return save_png(fig, path)


# --------------------------------------------------------------------------------------------
# UMAP of the codes


def embed(
    codes: np.ndarray, *, max_points: int = 2000, seed: int = 0, n_neighbors: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """2-D UMAP of a seeded subsample of the codes.

    Returns ``(rows_used, embedding)``: the sorted indices of the rows embedded (rows with
    non-finite values are skipped) and their ``(len(rows_used), 2)`` coordinates. Raises
    ``ValueError`` when fewer than five distinct rows remain, where UMAP has no neighbourhood
    graph to speak of.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim == 1:
        codes = codes[:, None]
    if codes.ndim != 2:
        raise ValueError(f"codes must be (rows, dims), got {codes.shape}")
    candidates = np.flatnonzero(np.isfinite(codes).all(axis=1))
    if len(candidates) > max_points:
        rng = np.random.default_rng(seed)
        candidates = np.sort(rng.choice(candidates, size=max_points, replace=False))
    x = codes[candidates]
    if len(x) == 0 or len(np.unique(x, axis=0)) < _MIN_EMBED_ROWS:
        raise ValueError("not enough distinct codes to embed")

    import umap  # deferred: importing umap pulls in numba and pynndescent (seconds)

    reducer = umap.UMAP(
        n_components=2,
        random_state=seed,
        n_neighbors=max(2, min(n_neighbors, len(x) - 1)),
    )
    with warnings.catch_warnings():
        # a fixed random_state forces n_jobs=1 and tiny inputs fall back from spectral init;
        # both are expected here and would only clutter trial logs
        warnings.simplefilter("ignore", UserWarning)
        embedding = reducer.fit_transform(x)
    return candidates, np.asarray(embedding, dtype=np.float64)


def _text_only(message: str, title: str) -> Figure:
    fig = Figure(figsize=(5, 3), dpi=100)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


FEW_CLASSES = 8  # up to this many classes a legend names each; more get a colour bar


def factor_colours(value: np.ndarray, names: list[str] | None = None) -> list[tuple[str, Any]]:
    """How a factor's points are coloured: one (label, colour) per class present, in class
    order, or none for a continuous colour bar. Nominal classes (``names``) take the categorical
    cycle; few ordered classes evenly spaced viridis colours."""
    import matplotlib

    classes = np.unique(value)
    integral = np.all(np.equal(np.mod(classes, 1), 0))
    if names is not None and integral and classes.max() < len(names):
        cycle = matplotlib.colormaps["tab10"]
        return [(names[int(c)], cycle(int(c) % 10)) for c in classes]
    if integral and len(classes) <= FEW_CLASSES:
        viridis = matplotlib.colormaps["viridis"]
        steps = np.linspace(0.0, 1.0, len(classes)) if len(classes) > 1 else [0.5]
        return [(str(int(c)), viridis(t)) for c, t in zip(classes, steps, strict=True)]
    return []


def _factor_scatter(fig, ax, xy, value, marker, names) -> None:  # noqa: ANN001
    legend = factor_colours(value, names)
    if not legend:
        sc = ax.scatter(xy[:, 0], xy[:, 1], s=marker, c=value, cmap="viridis", linewidths=0)
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02)
        return
    classes = np.unique(value)
    for c, (label, colour) in zip(classes, legend, strict=True):
        at = value == c
        ax.scatter(xy[at, 0], xy[at, 1], s=marker, color=colour, linewidths=0, label=label)
    ax.legend(fontsize=7, markerscale=2.5, loc="best", frameon=False, handletextpad=0.1,
              ncols=2 if len(legend) > 4 else 1)  # fmt: skip


def umap_embedding(
    codes: np.ndarray,
    factors: np.ndarray,
    factor_names: list[str],
    path: str | Path,
    *,
    max_points: int = 2000,
    seed: int = 0,
    n_neighbors: int = 15,
    categories: dict[str, list[str]] | None = None,
) -> Path:
    """One scatter panel of the 2-D UMAP of the codes per factor, coloured by that factor.

    A nominal factor (``categories``: its class names) gets distinct colours and a legend of its
    names; another factor of at most ``FEW_CLASSES`` classes ordered colours and a legend of its
    classes; a factor of more classes a colour bar.

    Degenerate codes (fewer than five distinct rows, e.g. a collapsed encoder) give a PNG that
    says so instead of raising: a collapsed model is a result worth seeing, not a crashed trial.
    """
    codes = np.asarray(codes)
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim == 1:
        factors = factors[:, None]
    if len(factors) != len(codes):
        raise ValueError(f"{len(codes)} code rows but {len(factors)} factor rows")
    if factors.shape[1] != len(factor_names):
        raise ValueError(f"{factors.shape[1]} factor columns but {len(factor_names)} names")
    try:
        rows, xy = embed(codes, max_points=max_points, seed=seed, n_neighbors=n_neighbors)
    except ValueError as err:
        return save_png(_text_only(str(err), "UMAP of codes"), path)

    # no factors: still show the embedding, uncoloured
    panels = list(zip(factor_names, factors[rows].T, strict=True)) or [("codes", None)]
    n_cols = min(4, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = Figure(figsize=(3.6 * n_cols, 3.1 * n_rows + 0.3), dpi=90, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    marker = 4.0 if len(rows) <= 1000 else 2.0
    for ax, (name, value) in zip(axes, panels, strict=False):
        if value is None:
            ax.scatter(xy[:, 0], xy[:, 1], s=marker, c="tab:blue", linewidths=0)
        else:
            _factor_scatter(fig, ax, xy, value, marker, (categories or {}).get(name))
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"UMAP of codes ({len(rows)} points)", fontsize=10)
    return save_png(fig, path)


# --------------------------------------------------------------------------------------------
# code x factor matrices


def matrix_heatmap(
    matrix: np.ndarray,
    path: str | Path,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    cmap: str = "viridis",
    fmt: str = ".2f",
    xlabel: str = "factor",
    ylabel: str = "code",
) -> Path:
    """Annotated heatmap of e.g. DCI importance or MIG mutual information (codes x factors)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got {m.shape}")
    if m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix is {m.shape} but labels are {len(row_labels)} x {len(col_labels)}"
        )
    n_rows, n_cols = m.shape
    fig = Figure(
        figsize=(min(16.0, 2.6 + 0.6 * n_cols), min(16.0, 1.4 + 0.35 * n_rows)),
        dpi=100,
        layout="constrained",
    )
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap=cmap, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(np.arange(n_cols), list(col_labels), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(np.arange(n_rows), list(row_labels), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if m.size <= _MAX_ANNOTATED_CELLS:
        # dark text on light cells and vice versa, judged from the colour's luminance
        rgba = im.cmap(im.norm(m))
        luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
        for (i, j), v in np.ndenumerate(m):
            colour = "black" if luminance[i, j] > 0.5 else "white"
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7, color=colour)
    return save_png(fig, path)
