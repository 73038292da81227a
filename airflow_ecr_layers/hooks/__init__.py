"""Hooks of the airflow-ecr-layers provider."""

from airflow_ecr_layers.hooks.ecr_layers import EcrLayersHook

__all__ = ["EcrLayersHook"]
