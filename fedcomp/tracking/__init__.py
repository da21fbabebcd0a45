"""Experiment tracking: finished runs logged to an external tracker (MLflow), read from their files."""
