"""TorchScript export of HIENet models (`hienet-export`); the file format is in FORMAT.md."""
from .exporter import FORMAT_VERSION, export_model, model_hash

__all__ = ["FORMAT_VERSION", "export_model", "model_hash"]
