"""What the probe families share: a frozen upstream representation, computed once per trial.

A probe trains something small on top of codes another study produced (the multi-task paper's
Sections 4.2 and 4.3): a decoder on a frozen multi-task encoder, task heads on frozen auto-encoder
codes. ``upstream`` names the representation: a trained model (an MLflow run id, or an artifact
folder holding ``model/``) or ``ground_truth``, the scored factors themselves (each scaled to [-1, 1],
the baseline row of the paper's Table 1).

The upstream is loaded in eval mode with gradients off, kept out of ``modules`` (so never optimised,
checkpointed or saved as the probe's), and encodes the study's images once in ``setup``: every epoch
then reads the same frozen codes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..core.config import GROUND_TRUTH
from ..core.evaluation import encode
from ..core.family import load_model
from ..core.trainer import Trainer

UPSTREAM_DOC = (
    "The frozen representation: an MLflow run id (or artifact folder) of a trained model, or "
    f"{GROUND_TRUTH!r} (the true factors, each scaled to [-1, 1]). Set by the spec's ``source``."
)


class ProbeTrainer(Trainer):
    """A Trainer whose modules sit on frozen upstream codes; their input width is the code's."""

    is_probe: ClassVar[bool] = True

    @classmethod
    def build_modules(cls, cfg: Any, in_channels: int) -> dict[str, nn.Module]:
        return {}  # built in ``setup``, once the upstream's code width is known

    def build_probe(self, code_dim: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _add_probe(self, code_dim: int) -> None:
        self.code_dim = code_dim
        # The probe's initial weights depend on its seed only, not on what loading the upstream
        # drew from the RNG; the caller's RNG is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            for name, module in self.build_probe(code_dim).items():
                self.modules[name] = module.to(self.device)

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        self.upstream = None
        if self.cfg.upstream == GROUND_TRUTH:
            codes = np.asarray(data["inputs"], dtype=np.float32)
        else:
            self.upstream = load_upstream(
                self.cfg.upstream, data, images.shape[1], self.device,
                getattr(self, "tracking_uri", None),
            )  # fmt: skip
            upstream = self.upstream.trainer

            def encode_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
                return upstream.encode(images[rows].float().div_(255.0))

            codes = upstream.fixed_codes(data)  # an external codes file: no image encoder
            if codes is None:
                codes, _ = encode(encode_rows, np.arange(len(images)), images.device)
        self.codes = torch.as_tensor(codes, dtype=torch.float32, device=self.device)  # (N, D)
        self._add_probe(self.codes.shape[1])

    @classmethod
    def from_saved(cls, cfg: Any, info: dict[str, Any], device: torch.device) -> ProbeTrainer:
        trainer = cls(cfg, int(info["in_channels"]), device)
        trainer.upstream = None
        trainer._add_probe(int(info["code_dim"]))
        return trainer

    def saved_info(self) -> dict[str, Any]:
        return {"code_dim": self.code_dim, "upstream": self.cfg.upstream}

    def codes_of(self, rows: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.codes[torch.as_tensor(rows, device=self.codes.device)]

    def encode_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.codes_of(rows), None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images -> the upstream's code (a saved probe loads its upstream on first use)."""
        if self.cfg.upstream == GROUND_TRUTH:
            raise ValueError("a ground-truth probe has no image encoder: its codes are the factors")
        if self.upstream is None:
            self.upstream = load_model(
                self.cfg.upstream, tracking_uri=getattr(self, "tracking_uri", None),
                device=str(self.device),
            )  # fmt: skip
        return self.upstream.trainer.encode(x)


def load_upstream(
    source: str, data: dict[str, Any], in_channels: int, device: torch.device,
    tracking_uri: str | None,
):  # fmt: skip
    """The upstream model, frozen; refused if it was trained on other factors or channels."""
    model = load_model(source, tracking_uri=tracking_uri, device=str(device))
    if model.trainer.in_channels != in_channels:
        raise ValueError(
            f"upstream {source}: trained on {model.trainer.in_channels}-channel images, "
            f"this study's have {in_channels}"
        )
    if list(model.info["factor_names"]) != list(data["factor_names"]):
        raise ValueError(
            f"upstream {source}: trained on factors {model.info['factor_names']}, this study "
            f"scores {list(data['factor_names'])}"
        )
    return model
