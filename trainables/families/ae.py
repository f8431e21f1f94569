"""Deterministic auto-encoder: reconstruction loss alone, the unregularised baseline of the
multi-task paper's Sec. 4.3 and of Locatello et al. 2019."""

from __future__ import annotations

from ._autoencoder import AEConfig, AutoEncoder


class AEFamilyConfig(AEConfig):
    """No regulariser: only the shared auto-encoder settings."""


class AE(AutoEncoder):
    name = "ae"
    Config = AEFamilyConfig
    description = "deterministic auto-encoder (reconstruction only)"
