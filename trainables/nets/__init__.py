"""nn.Modules only: no I/O, no logging."""

from .encoders import ENCODERS, ConvEncoder
from .heads import MLPHead

__all__ = ["ENCODERS", "ConvEncoder", "MLPHead"]
