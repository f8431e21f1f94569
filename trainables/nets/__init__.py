"""nn.Modules only: no I/O, no logging."""

from .decoders import DECODERS, ConvDecoder, MLPDiscriminator
from .encoders import ENCODERS, ConvEncoder
from .heads import MLPHead

__all__ = [
    "DECODERS",
    "ENCODERS",
    "ConvDecoder",
    "ConvEncoder",
    "MLPDiscriminator",
    "MLPHead",
]
