"""Score a model of your own with the standard metrics: encode images, save codes and factor classes,
then `study score`.

    .venv/bin/python examples/score_my_model.py codes.npz
    .venv/bin/study score codes.npz

Replace ``MyEncoder`` with your model (any ``torch.nn.Module`` from images to codes). The images
are a procedurally rendered dSprites view, so this runs without downloads; with the official file,
``load("dsprites", path="dsprites.npz")``. Factors must be integer classes (``study score`` says so
otherwise; ``--bin-factors N`` cuts continuous ones into N equal-width bins).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from trainables.data import load, subset


class MyEncoder(torch.nn.Module):
    """Stands in for your model: images (N, 1, 64, 64) in [0, 1] -> codes (N, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 4, 2, 1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 4, 2, 1), torch.nn.ReLU(),
            torch.nn.Flatten(), torch.nn.Linear(32 * 16 * 16, 10),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def main(out: str) -> None:
    torch.manual_seed(0)
    data = subset(load("dsprites"), "quickstart")  # shape x scale x posX x posY, orientation 0
    rng = np.random.default_rng(0)
    classes = data.sample_factors(3000, rng)  # (N, factors) integer classes
    images = torch.from_numpy(data.images_float(classes))
    model = MyEncoder().eval()
    with torch.no_grad():
        codes = torch.cat([model(batch) for batch in images.split(500)]).numpy()
    np.savez(out, codes=codes, factors=data.labels(classes))
    print(f"wrote {out}: codes {codes.shape}, factors {list(data.label_names)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "codes.npz")
