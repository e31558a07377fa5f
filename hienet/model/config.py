"""Model configuration: defaults, presets and validation.

A config is a plain dict (JSON/YAML friendly). Unknown keys are an error that names the key,
so a typo never silently falls back to a default.
"""
import copy
from typing import Any, Dict, List

from e3nn import o3

DEFAULTS: Dict[str, Any] = {
    "species": None,  # chemical symbols, in index order (required)
    "cutoff": 5.0,  # Å
    "num_radial_basis": 8,
    "envelope_p": 6,
    "invariant_features": 32,  # channels of the one-hot embedding and the invariant layer
    # Node irreps after each equivariant block (the input is invariant_features x 0e).
    "hidden_irreps": ["32x0e+8x1e+4x2e", "32x0e+8x1e+4x2e+2x3e", "32x0e+8x1e+4x2e+2x3e", "32x0e"],
    "lmax": 3,  # spherical harmonics of the edge direction: l = 0..lmax
    "radial_mlp_hidden": [64, 64],
    "conv_denominator": 1.0,  # messages are divided by this (average number of neighbours)
    "parity": False,  # True: proper O(3) irreps (1o, 2e, 3o ...), exactly mirror invariant
    "smooth_invariant": True,  # multiply invariant-layer messages by the cutoff envelope
    "shift": 0.0,  # per-species energy shift (list) or one value (eV)
    "scale": 1.0,  # per-species energy scale (list) or one value
    # Kernel of the equivariant convolution, not part of the architecture (same weights, same
    # numbers): "fused" (torch.ops.hienet.convolution), "e3nn" (the reference) or "auto"
    # (fused when the operator library loads).
    "convolution": "auto",
}

#: config keys that choose an implementation, not the function: left out of model hashes
IMPLEMENTATION_KEYS = ("convolution",)

_SMALL_IRREPS = ["32x0e+8x1e+4x2e", "32x0e+8x1e+4x2e+2x3e", "32x0e+8x1e+4x2e+2x3e", "32x0e"]
_V3_IRREPS = [
    "512x0e+128x1e+64x2e",
    "512x0e+128x1e+64x2e+32x3e",
    "512x0e+128x1e+64x2e+32x3e",
    "512x0e",
]

# Presets fix the architecture sizes; species, shift, scale and denominator come from data
# (or from an official checkpoint). `hienet-v3` = the official train.yaml.
PRESETS: Dict[str, Dict[str, Any]] = {
    "hienet-v3": {"invariant_features": 384, "hidden_irreps": _V3_IRREPS},
    "small": {"invariant_features": 32, "hidden_irreps": _SMALL_IRREPS},
    "tiny": {
        "invariant_features": 8,
        "hidden_irreps": ["8x0e+4x1e", "8x0e"],
        "lmax": 1,
        "radial_mlp_hidden": [16],
    },
}


def make_config(preset: str = None, **overrides) -> Dict[str, Any]:
    """DEFAULTS, then the named preset, then `overrides`; validated."""
    config = copy.deepcopy(DEFAULTS)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
        config.update(copy.deepcopy(PRESETS[preset]))
    config.update(overrides)
    return validate_config(config)


def _per_species(name: str, value, n: int) -> List[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * n
    value = [float(v) for v in value]
    if len(value) != n:
        raise ValueError(f"config key {name!r} has {len(value)} values for {n} species")
    return value


def validate_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """Check keys and values; return a normalised copy (per-species lists expanded)."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise KeyError(
            f"unknown model config key(s) {unknown}; valid keys are {sorted(DEFAULTS)}"
        )
    config = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(config)}
    species = config["species"]
    if not species:
        raise ValueError("model config key 'species' must list the chemical symbols")
    from ase.data import atomic_numbers

    for s in species:
        if s not in atomic_numbers:
            raise ValueError(f"config key 'species' holds {s!r}, which is not a chemical symbol")
    if len(set(species)) != len(species):
        raise ValueError(f"config key 'species' has duplicates: {species}")
    config["species"] = list(species)
    if not config["cutoff"] > 0:
        raise ValueError(f"config key 'cutoff' must be positive, got {config['cutoff']}")
    if not config["hidden_irreps"]:
        raise ValueError("config key 'hidden_irreps' must list at least one block")
    for irreps in config["hidden_irreps"]:
        try:
            o3.Irreps(irreps)
        except Exception as err:
            raise ValueError(f"config key 'hidden_irreps': cannot parse {irreps!r}: {err}") from None
    last = o3.Irreps(config["hidden_irreps"][-1])
    if any(ir != o3.Irrep("0e") for _, ir in last):
        raise ValueError(f"the last entry of 'hidden_irreps' must be scalars (Nx0e), got {last}")
    from .convolution import KERNELS

    if config["convolution"] not in KERNELS:
        raise ValueError(
            f"config key 'convolution' must be one of {list(KERNELS)}, got {config['convolution']!r}"
        )
    if float(config["conv_denominator"]) <= 0:
        raise ValueError("config key 'conv_denominator' must be positive")
    n = len(species)
    config["shift"] = _per_species("shift", config["shift"], n)
    config["scale"] = _per_species("scale", config["scale"], n)
    config["conv_denominator"] = float(config["conv_denominator"])
    return config
