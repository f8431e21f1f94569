"""Ray's worker setup hook: a worker imports what a trial needs as it starts.

Ray starts a job's workers as soon as its driver connects, while the driver is still preparing
data and the parent run; a trial then lands on a worker that has already paid for torch, MLflow
and the metric stack (about 3 s of imports), instead of paying for it after Tune places it.
"""

from __future__ import annotations


def warm() -> None:
    import study.launch  # noqa: F401  (the trial entry point and all it imports)
