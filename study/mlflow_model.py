"""A trial's trained model as an MLflow logged model: listed under the experiment's "Logged models"
and linked to its run, loadable with ``mlflow.pyfunc.load_model("models:/<id>")``.

The run's ``model/`` folder (``weights.pt`` + ``config.json``) stays the project's contract
(``trainables.load_model``); the logged model wraps a copy of it with ``encoder_model.py``, so
MLflow's own tools (the UI, ``mlflow models``, serving) see a model. It is made where the run's
artifacts are sent (``study.journal.Sender``), from the trial's folder: no trial waits on it, a
tracking outage only delays it, and a second send (a retry, ``study sync``) finds it made.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

NAME = "encoder"
CODE = Path(__file__).with_name("encoder_model.py")


class PackagingError(Exception):
    """The model could not be written as an MLflow model here (not a store failure: no retry)."""


def package(model_dir: Path, out: Path) -> None:
    """Write the MLflow model of a ``model/`` folder to ``out`` (no server involved)."""
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # MLflow draws a progress bar while it copies the artifacts in: noise in a trial's output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    info = json.loads((model_dir / "config.json").read_text())
    channels = int(info.get("in_channels") or 1)
    latent = info.get("config", {}).get("latent_dim")
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("uint8"), (-1, channels, 64, 64))]),
        outputs=Schema([TensorSpec(np.dtype("float64"), (-1, int(latent) if latent else -1))]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no input example": the signature says it
        mlflow.pyfunc.save_model(
            str(out),
            python_model=str(CODE),
            artifacts={"model": str(model_dir)},
            signature=signature,
            # Stated, not inferred: inference imports the model in a subprocess (seconds).
            pip_requirements=["disentangle-study", f"mlflow=={mlflow.__version__}"],
        )


def log_model(
    client: MlflowClient, run_id: str, experiment_id: str, model_dir: Path, tags: dict[str, Any]
) -> str | None:
    """The run's logged model id, made once: a READY one is kept, one cut short is finished."""
    from mlflow.entities import LoggedModelStatus

    found = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'", max_results=1
    )
    if found and found[0].status == LoggedModelStatus.READY:
        return found[0].model_id
    model = found[0] if found else client.create_logged_model(
        experiment_id, name=NAME, source_run_id=run_id,
        tags={k: str(v) for k, v in tags.items()},
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        try:
            package(model_dir, Path(tmp) / "model")
        except Exception as err:
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise PackagingError(f"{model_dir}: {type(err).__name__}: {err}") from err
        client.log_model_artifacts(model.model_id, str(Path(tmp) / "model"))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id
