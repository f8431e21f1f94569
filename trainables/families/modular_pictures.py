"""``relations.png``, the modular auto-encoder's own picture: test images, their reconstructions and
every relation's result on their codes, decoded, with the results the prior converts to unexpected
factor values framed. (The shared pictures, UMAP, reconstructions and traversals, are
``core.artifacts``'.)"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ..core import pictures
from .modular_parts import relation_outcomes

RELATION_EXAMPLES = 8  # rows of relations.png

RELATION_CELL_IN = 0.8  # one image, ~native resolution for 64 px at the 90 dpi below
RELATION_GAP_IN = 0.08  # between columns
RELATION_GROUP_GAP_IN = 0.2  # extra space between the source columns and the results
RELATION_NOTE_IN = 0.2  # below every image: room for its note
RELATION_LABEL_IN = 1.3  # left margin for the row labels
RELATION_HEADER_IN = 0.95  # up to three title lines and two-line column titles
RELATION_PAD_IN = 0.1
_RELATION_DPI = 90
_RELATION_TITLE_PT = 8.5
_RELATION_TITLE_LINES = 3  # what RELATION_HEADER_IN holds; each further line adds its height
_WRONG = "#d62728"
_INHERITED = "#e67e00"
_DRAWN = "#8e44ad"


def relation_results(
    sources: np.ndarray,
    results: np.ndarray,
    path: str | Path,
    *,
    source_labels: Sequence[str],
    relation_labels: Sequence[str],
    row_labels: Sequence[str],
    wrong: np.ndarray,
    inherited: np.ndarray | None = None,
    drawn: np.ndarray | None = None,
    notes: Sequence[Sequence[str]] | None = None,
    title: str = "",
) -> Path:
    """Row i: source i's images (e.g. the input and its reconstruction), then what each relation
    made of its code, decoded.

    ``sources`` is ``(N, S, C, H, W)`` with column titles ``source_labels`` (S); ``results``
    ``(N, R, C, H, W)`` with ``relation_labels`` (R), set apart from the sources by a wider gap.
    ``wrong`` ``(N, S + R)`` frames cells in red (e.g. a result whose code lands on other factor
    values than expected), ``inherited`` (same shape) in orange instead (e.g. wrong only because
    its source already was), ``drawn`` in purple (e.g. right as a code, wrong as an image); ``notes`` ``(N, S + R)`` strings are written under the cells, in
    their frame's colour. The figure is ``RELATION_LABEL_IN + (S + R) * (RELATION_CELL_IN +
    RELATION_GAP_IN) + RELATION_GROUP_GAP_IN + RELATION_PAD_IN`` wide and ``RELATION_HEADER_IN +
    N * (RELATION_CELL_IN * H / W + RELATION_NOTE_IN) + RELATION_PAD_IN`` high, plus the height of
    the title's lines beyond three once it is wrapped to that width.
    """
    src, res = np.asarray(sources), np.asarray(results)
    if src.ndim != 5 or res.ndim != 5:
        raise ValueError(
            f"sources and results must be (N, columns, C, H, W); got {src.shape} and {res.shape}"
        )
    n_rows, n_src = src.shape[:2]
    n_res = res.shape[1]
    if res.shape[0] != n_rows or res.shape[2:] != src.shape[2:]:
        raise ValueError(f"sources {src.shape} and results {res.shape} do not match")
    if n_rows == 0 or n_src + n_res == 0:
        raise ValueError("empty relation grid")
    if len(source_labels) != n_src or len(relation_labels) != n_res:
        raise ValueError(
            f"{len(source_labels)} + {len(relation_labels)} column titles for {n_src} + {n_res} "
            f"columns"
        )
    if len(row_labels) != n_rows:
        raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows")
    n_cols = n_src + n_res
    marks = np.asarray(wrong, dtype=bool)
    soft = np.zeros_like(marks) if inherited is None else np.asarray(inherited, dtype=bool)
    if marks.shape != (n_rows, n_cols) or soft.shape != marks.shape:
        raise ValueError(
            f"wrong and inherited must be ({n_rows}, {n_cols}); got {marks.shape}, {soft.shape}"
        )
    image = np.zeros_like(marks) if drawn is None else np.asarray(drawn, dtype=bool)
    if image.shape != marks.shape:
        raise ValueError(f"drawn must be ({n_rows}, {n_cols}); got {image.shape}")
    colours = np.where(marks, _WRONG, np.where(soft, _INHERITED, np.where(image, _DRAWN, "")))
    if notes is not None and (len(notes) != n_rows or any(len(row) != n_cols for row in notes)):
        raise ValueError(f"notes must be {n_rows} rows of {n_cols} strings")
    h, w = src.shape[3:5]
    cells = np.concatenate([src, res], axis=1)  # (N, S + R, C, H, W)
    cells = pictures.as_images(cells.reshape(n_rows * n_cols, *src.shape[2:]), "images")
    cells = cells.reshape(n_rows, n_cols, h, w, 3)
    titles = [*source_labels, *relation_labels]

    cell_w, cell_h = RELATION_CELL_IN, RELATION_CELL_IN * h / w
    col_w, row_h = cell_w + RELATION_GAP_IN, cell_h + RELATION_NOTE_IN
    width_in = RELATION_LABEL_IN + n_cols * col_w + RELATION_GROUP_GAP_IN + RELATION_PAD_IN
    # the title wrapped to the figure's width (~0.6 em a character), the header grown to hold it
    chars = max(20, int(width_in * 72 / (0.6 * _RELATION_TITLE_PT)))
    lines = [part for line in title.splitlines() for part in textwrap.wrap(line, chars) or [""]]
    line_in = 1.3 * _RELATION_TITLE_PT / 72
    header_in = RELATION_HEADER_IN + max(0, len(lines) - _RELATION_TITLE_LINES) * line_in
    height_in = header_in + n_rows * row_h + RELATION_PAD_IN
    fig = Figure(figsize=(width_in, height_in), dpi=_RELATION_DPI)
    for i in range(n_rows):
        top = height_in - header_in - i * row_h  # inches from the bottom
        for j in range(n_cols):
            left = RELATION_LABEL_IN + j * col_w + (RELATION_GROUP_GAP_IN if j >= n_src else 0)
            ax = fig.add_axes(
                (left / width_in, (top - cell_h) / height_in, cell_w / width_in, cell_h / height_in)
            )
            ax.imshow(cells[i, j], interpolation="antialiased")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(colours[i, j] or "0.6")
                spine.set_linewidth(2.5 if colours[i, j] else 0.6)
            if i == 0:
                # a long title goes on two lines ("object_hue" / "+1") so neighbours never touch
                label = titles[j] if len(titles[j]) <= 12 else titles[j].replace(" ", "\n", 1)
                ax.set_title(label, fontsize=8, pad=3)
            if j == 0:
                ax.text(
                    -0.12, 0.5, row_labels[i], transform=ax.transAxes, ha="right",
                    va="center", fontsize=7.5, linespacing=1.15,
                )  # fmt: skip
            note = notes[i][j] if notes is not None else ""
            if note:
                ax.text(
                    0.5, -0.04, note, transform=ax.transAxes, ha="center", va="top",
                    fontsize=6.5, color=colours[i, j] or "0.25",
                )  # fmt: skip
    if lines:
        fig.suptitle(
            "\n".join(lines), fontsize=_RELATION_TITLE_PT, y=1 - 0.06 / height_in, va="top",
            linespacing=1.3,
        )  # fmt: skip
    return pictures.save_png(fig, path)


def picture_rows(model: Any, data: dict[str, Any], n: int) -> np.ndarray:
    """``n`` test rows drawn with the seed, each of another factor combination while there
    are: the test split is in factor order, so its first rows would all look alike."""
    order = np.random.default_rng(model.cfg.seed).permutation(np.asarray(data["test"]))
    _, first = np.unique(np.asarray(data["factors"])[order], axis=0, return_index=True)
    distinct = np.zeros(len(order), bool)
    distinct[first] = True
    return np.concatenate([order[distinct], order[~distinct]])[:n]

@torch.no_grad()
def draw_relations(
    model: Any, data: dict[str, Any], path: Path, *, n_examples: int = RELATION_EXAMPLES
) -> Path:
    """``relations.png``: row i is a test image (``n_examples`` of them, of distinct factor
    values where the split allows), its reconstruction, then every relation's result on its
    code, decoded. A result is framed in red when the prior converts it (most likely
    component per partition) to other factor values than the image's true values moved by the
    relation (``modular_parts.relation_outcomes``), in orange instead when it
    is right for the source's own converted code (the encoder, not the relational learner,
    got it wrong); a reconstruction is framed in red when the image's code converts to other
    values than its true ones. A cell whose code is right is framed in purple when its decoded
    image is blank (``flat_images``) or, encoded again, converts to other values: the picture
    judges what a person sees, not only the code (``judge_cells``). Notes give the converted
    values of what is framed."""
    model.modules.eval()
    if not model.prior_fitted:  # as in test_metrics: training ended within the warm-up
        model.fit_prior()
    prior = model.prior
    rows = picture_rows(model, data, n_examples)
    n, n_rel = len(rows), len(model.relations)
    x = torch.as_tensor(data["images"][rows], device=model.device).float().div_(255.0)
    z = model.encode(x)[0]  # (n, D)
    ids = torch.arange(n_rel, device=model.device).repeat(n)  # (n * R,), source-major
    out = model.relate(z.repeat_interleave(n_rel, 0), ids)  # (n * R, D)
    classes = np.asarray(data["factors"])[rows]  # (n, K)
    coded, _ = prior.classify(z, -math.inf)  # (n, K): the sources' converted codes
    grid = out.reshape(n, n_rel, -1)  # (n, R, D)
    truth = relation_outcomes(prior, classes, grid, model.relations)
    # the same results judged against the source's code: right there but wrong against the
    # truth means the relational learner did its part on a code the encoder misplaced
    by_code = relation_outcomes(prior, coded, grid, model.relations)
    decoded = model.decode(torch.cat([z, out])).cpu().numpy()  # (n + n * R, C, H, W)
    sources = np.stack([x.cpu().numpy(), decoded[:n]], 1)  # (n, 2, C, H, W)
    results = decoded[n:].reshape(n, n_rel, *decoded.shape[1:])  # (n, R, C, H, W)
    # the decoded images judged too: encoded again and converted, or flat (nothing drawn)
    images = torch.as_tensor(decoded, device=model.device)
    seen_codes = model.encode(images)[0]
    seen_coded, _ = prior.classify(seen_codes[:n], -math.inf)
    seen = relation_outcomes(prior, classes, seen_codes[n:].reshape(n, n_rel, -1), model.relations)
    flat = flat_images(decoded)
    frames = judge_cells(
        truth_ok=np.concatenate([(coded == classes).all(1)[:, None], truth.correct], 1),
        code_ok=np.concatenate([np.zeros((n, 1), bool), by_code.correct], 1),  # no source above
        image_ok=np.concatenate([(seen_coded == classes).all(1)[:, None], seen.correct], 1),
        flat=np.concatenate([flat[:n, None], flat[n:].reshape(n, n_rel)], 1),
        got=np.concatenate([coded[:, None], truth.predicted], 1),
        shows=np.concatenate([seen_coded[:, None], seen.predicted], 1),
    )
    names = model.factor_names
    counts = {kind: int((frames.kinds[:, 1:] == kind).sum()) for kind in (WRONG, INHERITED, DRAWN)}
    title = (
        f"{model.name}: the relations applied to the codes of {n} test images, decoded "
        f"({n * n_rel} results)\n"
        f"frames: red, code wrong ({counts[WRONG]}) · orange, its source's code wrong "
        f"({counts[INHERITED]}) · purple, code right, image blank or other ({counts[DRAWN]})\n"
        f"notes: {' '.join(names)} converted from the code (got) or from the image (shows)"
    )
    blank = np.zeros((n, 1), bool)
    return relation_results(
        sources,
        results,
        path,
        source_labels=["input", "reconstruction"],
        relation_labels=[f"{names[r.factor]} {r.step:+d}" for r in model.relations],
        row_labels=[
            "\n".join(f"{name} {int(c)}" for name, c in zip(names, classes[i], strict=True))
            for i in range(n)
        ],
        wrong=np.concatenate([blank, frames.kinds == WRONG], 1),
        inherited=np.concatenate([blank, frames.kinds == INHERITED], 1),
        drawn=np.concatenate([blank, frames.kinds == DRAWN], 1),
        notes=[["", *row] for row in frames.notes],
        title=title,
    )


WRONG, INHERITED, DRAWN = "wrong", "inherited", "drawn"
FLAT_CONTRAST = 0.15  # brightest minus darkest pixel below this (of 1): nothing drawn


def flat_images(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N,): the image is one flat tone (a blank result)."""
    x = np.asarray(images).reshape(len(images), -1)
    return (x.max(1) - x.min(1)) < FLAT_CONTRAST


@dataclass(frozen=True)
class CellFrames:
    kinds: np.ndarray  # (N, M) of WRONG / INHERITED / DRAWN / ""
    notes: list[list[str]]


def judge_cells(
    *,
    truth_ok: np.ndarray,
    code_ok: np.ndarray,
    image_ok: np.ndarray,
    flat: np.ndarray,
    got: np.ndarray,
    shows: np.ndarray,
) -> CellFrames:
    """Each cell's frame: WRONG when its code converts to other factor values than the truth
    and than its source's own code does; INHERITED when only the source's code was wrong;
    DRAWN when the code is right but the decoded image is flat or encodes to other values.
    ``got`` / ``shows`` (N, M, K) are the converted values of the code and of the image."""
    kinds = np.where(
        ~truth_ok & ~code_ok, WRONG,
        np.where(~truth_ok, INHERITED, np.where(flat | ~image_ok, DRAWN, "")),
    )  # fmt: skip

    def values(v: np.ndarray) -> str:
        return " ".join(str(int(c)) for c in v)

    notes = [
        [
            f"got {values(got[i, j])}" if kinds[i, j] in (WRONG, INHERITED)
            else "blank" if kinds[i, j] == DRAWN and flat[i, j]
            else f"shows {values(shows[i, j])}" if kinds[i, j] == DRAWN
            else ""
            for j in range(kinds.shape[1])
        ]
        for i in range(kinds.shape[0])
    ]  # fmt: skip
    return CellFrames(kinds, notes)
