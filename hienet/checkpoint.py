"""Our checkpoint format and loading of any supported model file.

A HIENet checkpoint is `torch.save` of a plain dict:

    {"format": "hienet-checkpoint", "format_version": 1, "hienet_version": "0.1.0",
     "config": {... JSON types only ...}, "species": [...], "state_dict": {...},
     "train_state": {...} (optional: optimizer, scheduler, EMA, epoch)}

Only tensors, dicts, lists, strings and numbers are pickled, so it loads with
`torch.load(weights_only=True)`.
"""
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ._version import __version__
from .model import HIENet, validate_config

FORMAT = "hienet-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path, model: HIENet, train_state: Optional[Dict[str, Any]] = None) -> None:
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hienet_version": __version__,
        "config": model.config,
        "species": list(model.species),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    torch.save(payload, path)


def _require_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a HIENet checkpoint, official checkpoint or exported model "
                         "(not a torch zip archive; truncated or corrupt?)")
    return path


def is_exported_model(path) -> bool:
    """True for a TorchScript file written by `hienet-export` (it carries metadata.json)."""
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("extra/metadata.json") for name in archive.namelist())


def load_checkpoint(path) -> Dict[str, Any]:
    """Our checkpoint dict (validated). Raises a clear error for other or broken files."""
    path = _require_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} is not a HIENet checkpoint: {str(err).splitlines()[0]}") from None
    except Exception as err:
        raise ValueError(f"{path} is not a readable checkpoint (corrupt?): {err}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a HIENet checkpoint (no 'format': '{FORMAT}' entry)")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format version {ckpt.get('format_version')!r} is not supported "
            f"(this hienet {__version__} reads {FORMAT_VERSION})"
        )
    return ckpt


def model_from_checkpoint(ckpt: Dict[str, Any], source="checkpoint") -> HIENet:
    config = validate_config(ckpt["config"])
    model = HIENet(config)
    state = ckpt["state_dict"]
    theirs, ours = set(state), set(model.state_dict())
    if theirs != ours:
        raise ValueError(
            f"{source}: weights do not fit the config (missing {sorted(ours - theirs)[:5]}, "
            f"unexpected {sorted(theirs - ours)[:5]})"
        )
    # Build in the stored precision so that loading loses no bits.
    stored = [v.dtype for v in state.values() if v.is_floating_point()]
    model = model.to(stored[0] if stored else torch.float64)
    model.load_state_dict(state)
    return model


def load_model(path, dtype=torch.float64, device="cpu") -> HIENet:
    """An eager `HIENet` (eval mode) from our checkpoint or an official HIENet checkpoint."""
    path = _require_file(path)
    try:
        model = model_from_checkpoint(load_checkpoint(path), source=str(path))
    except ValueError as ours_error:
        from .official import load_official_checkpoint, model_from_official

        try:
            ckpt = load_official_checkpoint(path)
        except ValueError:
            raise ours_error from None
        model, _ = model_from_official(ckpt, dtype=dtype)
    return model.to(dtype=dtype, device=device).eval()
