"""Study orchestration: specs, Ray Tune launch, MLflow tracking and the ``study`` CLI."""

import os

# MLflow 3's client telemetry (a thread in every process reporting usage to MLflow's servers) has
# nothing to do in a study's trials, hundreds at once on a cluster that often has no internet,
# and its session-id bookkeeping raced the trials' sending threads under load (5 errors at 128
# writers in benchmarks/tracking_load.py). MLFLOW_DISABLE_TELEMETRY=false turns it back on.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
