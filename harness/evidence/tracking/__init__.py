"""Experiment tracking: the recipe's ``tracking`` section streams a run's curves live through
mmengine's vis backends (``backends``), and ``harness export mlflow`` sends stored runs to an MLflow
tracking store afterwards (``mlflow_export``). Both need the ``tracking`` extra; the rest of the
harness never imports it.
"""
