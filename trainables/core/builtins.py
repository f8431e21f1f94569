"""The built-in families by name, as dotted paths: data, imported by the registry on first use
(``core.family``), and read by ``core.saved`` to record a built-in under its short name."""

from __future__ import annotations

# One line per family: registry key = Trainer.name = file name.
BUILTIN_FAMILIES = {
    "multitask": "trainables.families.multitask:MultiTask",
    "ae": "trainables.families.ae:AE",
    "vae": "trainables.families.vae:VAE",
    "annealed_vae": "trainables.families.annealed_vae:AnnealedVAE",
    "factor_vae": "trainables.families.factor_vae:FactorVAE",
    "dip_vae": "trainables.families.dip_vae:DIPVAE",
    "beta_tc_vae": "trainables.families.beta_tc_vae:BetaTCVAE",
    "decoder_probe": "trainables.families.decoder_probe:DecoderProbe",
    "task_probe": "trainables.families.task_probe:TaskProbe",
    "modular_ae": "trainables.families.modular_ae:ModularAE",
    "external": "trainables.families.external:External",
}


def family_key(trainer_cls: type) -> str:
    """The registry name that finds ``trainer_cls`` again in any process: a built-in's short
    name, else its dotted path (which any process that can import its module resolves)."""
    path = f"{trainer_cls.__module__}:{trainer_cls.__qualname__}"
    name = getattr(trainer_cls, "name", None)
    return name if BUILTIN_FAMILIES.get(name) == path else path
