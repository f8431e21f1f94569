"""The registry of model families: the ten built-in ones, and any a user brings (``trainables.registry``).

Adding a built-in family: its own file under ``trainables/families/`` (a ``Trainer`` subclass whose
``name`` is the file name) and one line in ``BUILTIN_FAMILIES`` (``core/builtins.py``). A user's family needs no line here:
``family: mypkg.models:MyVAE`` in a spec, an entry point of group ``disentangle_study.families`` in
its package's pyproject.toml, or ``@register_family("name")`` (see ``trainables.registry``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..registry import Registry
from .builtins import BUILTIN_FAMILIES
from .config import DatasetConfig, TrainConfig
from .outputs import Declared

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .context import TrialContext
    from .saved import SavedModel
    from .trainer import Trainer

# The loop, saved models and the Trainer class (so torch) are imported where they are used: listing
# families (``study list``, ``status``) resolves nothing and must not pay for torch.


@dataclass(frozen=True)
class Family:
    """A registered ``Trainer`` subclass under the name that finds it (``key``) in any process."""

    key: str
    trainer: type[Trainer]

    @property
    def name(self) -> str:
        return self.key

    @property
    def Config(self) -> type[BaseModel]:  # noqa: N802 (a class, as in pydantic)
        return self.trainer.Config

    @property
    def description(self) -> str:
        return self.trainer.description

    @property
    def declared(self) -> Declared:
        """Its outputs and pictures (``Trainer.outputs`` / ``pictures``), as its runs carry them."""
        return Declared.of(self.trainer)

    def prepare_data(self, dataset: DatasetConfig, configs: Sequence[Any]) -> dict[str, Any]:
        return self.trainer.prepare_data(dataset, configs)

    def expand(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The trials a grid combination stands for (``Trainer.expand``)."""
        return self.trainer.expand(params)

    def fit(self, cfg: Any, data: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        """Train, evaluate, draw and save (``core.loop.fit``), recording this family's key."""
        from .loop import fit

        return fit(self.trainer, cfg, data, ctx, family=self.key)

    def load_encoder(
        self, source: str | Path, *, tracking_uri: str | None = None, device: str = "cpu"
    ) -> SavedModel:
        """The trained model of a trial (artifact dir or MLflow run id), ready to encode."""
        model = load_model(source, tracking_uri=tracking_uri, device=device)
        if type(model.trainer) is not self.trainer:
            raise ValueError(f"{source}: a {model.family!r} model, not {self.key!r}")
        return model


def _not_a_family(obj: Any) -> str | None:
    from .trainer import Trainer

    if not (inspect.isclass(obj) and issubclass(obj, Trainer)):
        return f"{obj!r} is not a subclass of trainables.Trainer"
    config = getattr(obj, "Config", None)
    if not (inspect.isclass(config) and issubclass(config, TrainConfig)):
        return f"{obj.__qualname__}.Config must be a subclass of trainables.TrainConfig"
    if not isinstance(getattr(obj, "name", None), str):
        return f"{obj.__qualname__} must set the class attribute name (a string)"
    return None


FAMILIES: Registry[Family] = Registry(
    "family",
    BUILTIN_FAMILIES,
    group="disentangle_study.families",
    check=_not_a_family,
    wrap=lambda key, trainer: Family(key, trainer),
)


def get_family(name: str) -> Family:
    """A family by registry name, entry point or dotted path (``RegistryError`` if none)."""
    return FAMILIES.get(name)


def register_family(name: str):
    """Decorator: ``@register_family("my_vae")`` on a ``Trainer`` subclass."""
    return FAMILIES.register(name)


def load_model(
    source: str | Path, *, tracking_uri: str | None = None, device: str = "cpu"
) -> SavedModel:
    """Rebuild a trial's modules from an artifact directory or an MLflow run id: the codes it
    gives are the ones the trial scored."""
    from .saved import read_model, rebuild

    info, weights = read_model(source, tracking_uri=tracking_uri, device=device)
    family = get_family(info["family"])
    return rebuild(family.trainer, info, weights, device, tracking_uri)
