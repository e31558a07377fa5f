"""Our checkpoint format and loading of any supported model file.

A HIENet checkpoint is `torch.save` of a plain dict:

    {"format": "hienet-checkpoint", "format_version": 1, "hienet_version": "0.1.0",
     "config": {... JSON types only ...}, "species": [...], "state_dict": {...},
     "train_state": {...} (optional: optimizer, scheduler, EMA, epoch)}

Only tensors, dicts, lists, strings and numbers are pickled, so it loads with
`torch.load(weights_only=True)`.
"""
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ._version import __version__
from .files import atomic_write
from .model import HIENet, validate_config

FORMAT = "hienet-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path, model: HIENet, train_state: Optional[Dict[str, Any]] = None) -> None:
    """Write atomically: a failure or a kill while saving leaves any previous file at `path` intact."""
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
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def _require_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a HIENet checkpoint, official checkpoint or exported model "
                         "(not a torch zip archive; truncated or corrupt?)")
    return path


EXPORTED, TORCHSCRIPT, PICKLE = "exported", "torchscript", "pickle"


def file_kind(path) -> str:
    """What a torch zip archive holds: EXPORTED (TorchScript written by hienet-export, with
    extra/metadata.json), TORCHSCRIPT (any other TorchScript file) or PICKLE (`torch.save`,
    e.g. a checkpoint). Records sit under one top directory whose name varies."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = {name.split("/", 1)[-1] for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path} is not a readable torch archive (truncated or damaged?): {err}") from None
    if "extra/metadata.json" in records:
        return EXPORTED
    if "constants.pkl" in records or any(r.startswith("code/") for r in records):
        return TORCHSCRIPT
    return PICKLE


def is_exported_model(path) -> bool:
    """True for a TorchScript file written by `hienet-export` (it carries metadata.json)."""
    return file_kind(path) == EXPORTED


def not_a_checkpoint(path) -> Optional[str]:
    """Why `path` (a torch zip archive) cannot be a checkpoint, or None if it may be one."""
    kind = file_kind(path)
    if kind == EXPORTED:
        return (f"{path} is an exported model (written by hienet-export), not a checkpoint; "
                "use it with pair_style hienet, HIENetCalculator or hienet.deploy.DeployedModel")
    if kind == TORCHSCRIPT:
        return (f"{path} is a TorchScript file but not written by hienet-export (it has no "
                "extra/metadata.json); HIENet reads its checkpoints (.pth), official HIENet "
                "checkpoints and files written by hienet-export")
    return None


def load_checkpoint(path) -> Dict[str, Any]:
    """Our checkpoint dict (validated). Raises a clear error for other or broken files."""
    path = _require_file(path)
    reason = not_a_checkpoint(path)
    if reason:
        raise ValueError(reason)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"the global {refused.group(1)!r}" if refused else "objects"
        raise ValueError(f"{path} is not a HIENet checkpoint: it pickles {what}, which HIENet "
                         "never loads (no code from model files is executed)") from None
    except Exception as err:
        raise ValueError(f"{path} is not a readable checkpoint (damaged?): {str(err).splitlines()[0]}") from None
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
    reason = not_a_checkpoint(path)
    if reason:
        raise ValueError(reason)
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
