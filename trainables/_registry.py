"""The one registry of model families (imported lazily by ``trainables``: it needs torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import (
    ae,
    annealed_vae,
    beta_tc_vae,
    decoder_probe,
    dip_vae,
    factor_vae,
    modular_ae,
    multitask,
    task_probe,
    vae,
)
from ._config import DatasetConfig
from ._context import TrialContext
from ._saved import SavedModel, load_model
from .loop import Trainer, fit


@dataclass(frozen=True)
class Family:
    trainer: type[Trainer]

    @property
    def name(self) -> str:
        return self.trainer.name

    @property
    def Config(self) -> type[BaseModel]:  # noqa: N802 (a class, as in pydantic)
        return self.trainer.Config

    @property
    def description(self) -> str:
        return self.trainer.description

    def prepare_data(self, dataset: DatasetConfig, configs: Sequence[Any]) -> dict[str, Any]:
        return self.trainer.prepare_data(dataset, configs)

    def expand(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The trials a grid combination stands for (``Trainer.expand``)."""
        return self.trainer.expand(params)

    def fit(self, cfg: Any, data: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        return fit(self.trainer, cfg, data, ctx)

    def load_encoder(
        self, source: str | Path, *, tracking_uri: str | None = None, device: str = "cpu"
    ) -> SavedModel:
        """The trained model of a trial (artifact dir or MLflow run id), ready to encode."""
        model = load_model(source, tracking_uri=tracking_uri, device=device)
        if model.family != self.name:
            raise ValueError(f"{source}: a {model.family!r} model, not {self.name!r}")
        return model


# One line per family: registry key = Trainer.name = file name.
FAMILIES: dict[str, Family] = {
    t.name: Family(t)
    for t in (
        multitask.MultiTask,
        ae.AE,
        vae.VAE,
        annealed_vae.AnnealedVAE,
        factor_vae.FactorVAE,
        dip_vae.DIPVAE,
        beta_tc_vae.BetaTCVAE,
        decoder_probe.DecoderProbe,
        task_probe.TaskProbe,
        modular_ae.ModularAE,
    )
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]

