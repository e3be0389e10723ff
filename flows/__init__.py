"""Prefect flows of the ncsn pipeline (the graph itself lives in dvc.yaml)."""
