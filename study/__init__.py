"""Study orchestration: specs, Ray Tune launch, MLflow tracking and the ``study`` CLI."""
