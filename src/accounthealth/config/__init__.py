"""Project and health-model configuration: YAML in, validated objects out."""

from accounthealth.config.loader import LoadedModel, LoadedProject, load_model_file, load_project
from accounthealth.config.model import HealthModel

__all__ = ["HealthModel", "LoadedModel", "LoadedProject", "load_model_file", "load_project"]
