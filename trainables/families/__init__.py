"""The built-in model families, one file each (a ``Trainer`` subclass named as its file), registered
by one line each in ``trainables.core.builtins.BUILTIN_FAMILIES``. Shared parts: ``_autoencoder``
(the auto-encoder zoo's base), ``_probe`` (frozen upstream codes), ``modular_parts``."""
