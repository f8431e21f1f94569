"""A user's own ground-truth dataset, found by dotted path or entry point (docs/own_data.md).

In a spec::

    dataset: {name: "byo.data:Squares", options: {positions: 8}}   # or name: squares, installed

A ``GroundTruthData`` subclass sets ``name``, ``channels``, ``factor_names``, ``factor_sizes`` and
``factor_values`` and implements ``_render(classes)``; the base class gives the grid index, subsets,
labels and values. Its constructor's keyword arguments are the spec's ``dataset.options``. The
module must be importable where the study runs (installed, or its folder on PYTHONPATH).
"""

from __future__ import annotations

import numpy as np

from trainables.data import DataError, GroundTruthData

_SIDE = 64
_SQUARE = 12  # side of the square in pixels


class Squares(GroundTruthData):
    """A bright square on black: posX x posY x brightness, one channel."""

    name = "squares"
    channels = 1
    factor_names = ("posX", "posY", "brightness")

    def __init__(self, positions: int = 8, levels: int = 4):
        if not 2 <= positions <= _SIDE - _SQUARE + 1 or levels < 2:
            raise DataError(  # a UserError: the study prints one line and exits 2
                f"squares: positions must be in [2, {_SIDE - _SQUARE + 1}] and levels >= 2, "
                f"got {positions} and {levels}"
            )
        self.factor_sizes = (positions, positions, levels)
        self.factor_values = (
            np.linspace(0.0, 1.0, positions),  # position as a fraction of the free width
            np.linspace(0.0, 1.0, positions),
            np.linspace(0.25, 1.0, levels),  # grey level; never black, so the square shows
        )
        # Top-left pixel of the square for each position class.
        self._corner = np.rint(self.factor_values[0] * (_SIDE - _SQUARE)).astype(np.int64)

    def _render(self, classes: np.ndarray) -> np.ndarray:
        """uint8 (N, 1, 64, 64); ``classes`` were range-checked by ``images``."""
        x = self._corner[classes[:, 0]]  # (N,)
        y = self._corner[classes[:, 1]]
        grey = np.rint(255 * self.factor_values[2][classes[:, 2]]).astype(np.uint8)
        pixels = np.arange(_SIDE)
        cols = (pixels >= x[:, None]) & (pixels < x[:, None] + _SQUARE)  # (N, 64)
        rows = (pixels >= y[:, None]) & (pixels < y[:, None] + _SQUARE)
        mask = rows[:, :, None] & cols[:, None, :]  # (N, 64, 64)
        return (mask * grey[:, None, None]).astype(np.uint8)[:, None]
