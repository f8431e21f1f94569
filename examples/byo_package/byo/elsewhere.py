"""An encoder trained outside any study, then scored by one (``study evaluate``).

``python -m byo.elsewhere OUT`` trains a small conv encoder to regress the true factors of
``byo.data.Squares`` (a supervised encoder: its codes should score high on MIG and DCI, the upper
reference a study of unsupervised models is read against) and writes the three forms
``study evaluate`` accepts: ``OUT/encoder.pt`` (TorchScript), ``OUT/weights.pt`` (a state dict of
``byo.elsewhere:ConvEncoder``) and ``OUT/codes.npz`` (one code per image, in the dataset's row order).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import Squares


class ConvEncoder(nn.Module):
    """Images in [0, 1] (B, 1, 64, 64) -> codes (B, latent_dim)."""

    def __init__(self, latent_dim: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(16, 16, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, latent_dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train(steps: int = 300, seed: int = 0) -> tuple[ConvEncoder, np.ndarray, np.ndarray]:
    """The encoder, every image of the dataset (uint8, row order) and their codes."""
    torch.manual_seed(seed)
    data = Squares()
    classes = data.index_to_classes(np.arange(data.num_samples))
    images = torch.as_tensor(data.images(classes)).float() / 255.0
    target = torch.as_tensor(data.values(classes), dtype=torch.float32)
    encoder = ConvEncoder(latent_dim=data.num_factors)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(images), (64,), generator=generator)
        loss = ((encoder(images[batch]) - target[batch]) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    encoder.eval()
    with torch.no_grad():
        codes = encoder(images).double().numpy()
    return encoder, images, codes


def main(out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    encoder, _, codes = train()
    torch.jit.save(torch.jit.script(encoder), str(folder / "encoder.pt"))
    torch.save(encoder.state_dict(), folder / "weights.pt")
    np.savez(folder / "codes.npz", codes=codes)
    print(f"wrote {folder}/encoder.pt, weights.pt and codes.npz ({codes.shape[0]} codes)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "elsewhere")
