"""From MLflow runs to tables, figures and reports."""
