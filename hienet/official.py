"""Read official HIENet checkpoints and build the equivalent `HIENet` model.

An official checkpoint (`torch.save` of a dict with `model_state_dict` and `config`, SevenNet
0.9 layout) pickles numpy objects in its config, so plain `torch.load(weights_only=True)`
refuses it. We load it with `weights_only=True` and an allow-list of exactly the numpy/codecs
globals such files contain: no arbitrary code runs, and anything else is refused by name.

Converted models keep the official behaviour bit for bit, including the invariant layer that
is not smooth at the cutoff (`smooth_invariant=False`).
"""
import pickle
import re
from typing import Any, Dict, Tuple

import numpy as np
import torch

from .model import HIENet, validate_config

# The globals an official checkpoint pickles besides torch's own tensor rebuilding.
_NUMPY_GLOBALS = [
    np.ndarray,
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Float32DType,
    np.dtypes.Int64DType,
    np.dtypes.Int32DType,
    np.dtypes.BoolDType,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
]


def _allowed_globals():
    import _codecs
    import collections

    allowed = list(_NUMPY_GLOBALS) + [_codecs.encode, collections.OrderedDict]
    # Checkpoints written with numpy < 2 name `numpy.core.multiarray`.
    allowed += [
        (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    ]
    return allowed


def load_official_checkpoint(path) -> Dict[str, Any]:
    """The checkpoint dict, loaded without executing arbitrary pickled code."""
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file not found: {path}") from None
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"the global {refused.group(1)!r}" if refused else "an object"
        raise ValueError(
            f"refused to load {path}: it pickles {what}, which is not in the allow-list of "
            "an official HIENet checkpoint (numpy arrays/dtypes, OrderedDict, tensors)"
        ) from None
    except Exception as err:
        raise ValueError(f"{path} is not a readable checkpoint file: {err}") from None
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt or "config" not in ckpt:
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"{path} is not an official HIENet checkpoint: expected keys 'model_state_dict' "
            f"and 'config', found {found}"
        )
    return ckpt


# Official options this implementation reproduces; anything else is refused by name.
_REQUIRED = {
    "use_edge_conv": False,
    "use_comf_embedding": False,
    "use_cgcnn_embedding": False,
    "readout_as_fcn": False,
    "self_connection_type": "linear",
    "use_bias_in_linear": False,
    "num_invariant_conv": 1,
    "act_radial": "silu",
    "use_denoising": False,
}


def _check_official_config(config: Dict[str, Any], source) -> None:
    for key, expected in _REQUIRED.items():
        if key in config and config[key] != expected:
            raise NotImplementedError(
                f"{source}: official config option {key}={config[key]!r} is not supported "
                f"(only {expected!r})"
            )
    basis = config.get("radial_basis", {}).get("radial_basis_name", "bessel")
    if basis != "bessel":
        raise NotImplementedError(f"{source}: radial_basis {basis!r} is not supported (only 'bessel')")
    cut = config.get("cutoff_function", {}).get("cutoff_function_name", "poly_cut")
    if cut != "poly_cut":
        raise NotImplementedError(f"{source}: cutoff_function {cut!r} is not supported (only 'poly_cut')")
    for key in ("act_scalar", "act_gate"):
        acts = config.get(key, {"e": "silu", "o": "tanh"})
        if acts.get("e") != "silu" or acts.get("o", "tanh") != "tanh":
            raise NotImplementedError(f"{source}: {key}={acts} is not supported (only e: silu, o: tanh)")


def official_to_config(config: Dict[str, Any], state: Dict[str, torch.Tensor], source="checkpoint"):
    """Our model config for an official config + state dict."""
    from ase.data import chemical_symbols

    _check_official_config(config, source)
    type_map = {int(z): int(i) for z, i in config["_type_map"].items()}
    species = [None] * len(type_map)
    for z, i in type_map.items():
        species[i] = chemical_symbols[z]
    inv = list(config["inv_features"])
    irreps = list(config["irreps_manual"])
    if len(set(inv)) != 1 or irreps[0].replace(" ", "") != f"{inv[0]}x0e":
        raise NotImplementedError(
            f"{source}: inv_features {inv} with irreps_manual[0] {irreps[0]!r} is not supported"
        )
    lmax_edge = config.get("lmax_edge", -1)
    return validate_config(
        {
            "species": species,
            "cutoff": float(config["cutoff"]),
            "num_radial_basis": int(config["radial_basis"]["bessel_basis_num"]),
            "envelope_p": int(config["cutoff_function"]["poly_cut_p_value"]),
            "invariant_features": int(inv[0]),
            "hidden_irreps": irreps[1:],
            "lmax": int(lmax_edge if lmax_edge >= 0 else config["lmax"]),
            "radial_mlp_hidden": list(config["weight_nn_hidden_neurons"]),
            "conv_denominator": float(state["0_convolution.denominator"].reshape(-1)[0]),
            "parity": bool(config["is_parity"]),
            "smooth_invariant": False,
            "shift": state["rescale_atomic_energy.shift"].double().reshape(-1).expand(len(species)).tolist(),
            "scale": state["rescale_atomic_energy.scale"].double().reshape(-1).expand(len(species)).tolist(),
        }
    )


_INVARIANT_NAMES = {
    "linear_query": "query",
    "linear_key": "key",
    "linear_value": "value",
    "linear_edge": "edge",
    "linear_concate": "output",
    "msg_update": "message_mlp",
    "key_update": "key_mlp",
    "bn": "output_norm",
    "bn_att": "attention_norm",
    "linear_reset": "reset_gate",
    "linear_update": "update_gate",
}
_BLOCK_NAMES = {
    "self_connection_intro.linear": "skip",
    "self_interaction_1.linear": "linear_in",
    "self_interaction_2.linear": "linear_out",
    "convolution.weight_nn": "radial_mlp",
    "convolution.denominator": "denominator",
}


def _our_key(key: str):
    """Our state-dict name for an official one, or None for constants we do not store."""
    if key.endswith(("output_mask", ".bias")) and not key.startswith("0_invariant"):
        return None
    if "_w3j_" in key or key.endswith("convolution.convolution.weight") or ".gate.mul." in key:
        return None
    if key == "edge_embedding.basis_module.coeffs":
        return "radial.bessel.frequencies"
    if key == "onehot_to_feature_x.linear.0.weight":
        return "embedding.weight"
    if key == "reduce_input_to_hidden.linear.0.weight":
        return "readout.hidden.weight"
    if key == "reduce_hidden_to_energy.linear.weight":
        return "readout.energy.weight"
    if key == "rescale_atomic_energy.shift":
        return "shift"
    if key == "rescale_atomic_energy.scale":
        return "scale"
    m = re.fullmatch(r"0_invariant_convolution\.(\w+?)(\.\d+)?\.(weight|bias)", key)
    if m and m.group(1) in _INVARIANT_NAMES:
        return f"invariant.{_INVARIANT_NAMES[m.group(1)]}{m.group(2) or ''}.{m.group(3)}"
    if key == "0_invariant_convolution.denominator":
        return None  # created by the official layer but never used in its forward
    m = re.fullmatch(r"(\d+)_(.+)", key)
    if m:
        for official, ours in _BLOCK_NAMES.items():
            if m.group(2).startswith(official):
                rest = m.group(2)[len(official):]
                return f"interactions.{m.group(1)}.{ours}{rest}"
    raise KeyError(key)


def convert_state_dict(state: Dict[str, torch.Tensor], model: HIENet, source="checkpoint"):
    """Official state dict → ours (shapes checked, every parameter of ours filled)."""
    ours = model.state_dict()
    converted = {}
    for key, value in state.items():
        try:
            name = _our_key(key)
        except KeyError:
            raise ValueError(f"{source}: unexpected official state-dict key {key!r}") from None
        if name is None:
            continue
        value = value.reshape(ours[name].shape) if name in ours else value
        if name not in ours or value.shape != ours[name].shape:
            raise ValueError(
                f"{source}: official key {key!r} does not fit our {name!r} "
                f"({tuple(value.shape)} vs {tuple(ours[name].shape) if name in ours else 'missing'})"
            )
        converted[name] = value.to(ours[name].dtype)
    needed = {k for k in ours if not re.search(r"(output_mask|\.bias|_w3j_|tensor_product\.weight|gate\.mul\.)", k)}
    needed |= {k for k in ours if k.startswith("invariant.")}
    missing = sorted(needed - set(converted))
    if missing:
        raise ValueError(f"{source}: official checkpoint lacks weights for {missing}")
    model.load_state_dict({**ours, **converted})
    return model


def model_from_official(ckpt_or_path, dtype=torch.float64) -> Tuple[HIENet, Dict[str, Any]]:
    """Our `HIENet` (eval mode, `dtype`) with the weights of an official checkpoint."""
    source = str(ckpt_or_path) if not isinstance(ckpt_or_path, dict) else "checkpoint"
    ckpt = ckpt_or_path if isinstance(ckpt_or_path, dict) else load_official_checkpoint(ckpt_or_path)
    state = ckpt["model_state_dict"]
    config = official_to_config(dict(ckpt["config"]), state, source)
    model = HIENet(config).to(dtype)
    convert_state_dict(state, model, source)
    return model.eval(), config
