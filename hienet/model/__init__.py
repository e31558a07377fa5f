"""HIENet model: configuration, modules and the energy → forces/stress path."""
from .config import DEFAULTS, PRESETS, make_config, validate_config
from .hienet import HIENet, build_model

__all__ = ["DEFAULTS", "PRESETS", "make_config", "validate_config", "HIENet", "build_model"]
