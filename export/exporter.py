"""Export a HIENet checkpoint to a self-contained TorchScript file with metadata."""
import hashlib
import io
import json
from typing import Any, Dict, List

import torch
from e3nn import o3
from e3nn.util.jit import script

from hienet._version import __version__
from hienet.files import atomic_write, check_writable_file
from hienet.integrity import DIGEST_KEY, archive_digest
from hienet.model import HIENet

from .deployable import DeployableHIENet

FORMAT_VERSION = 2
METADATA_FILE = "metadata.json"
STAGE_METHODS = ["embed", "edge_features", "invariant_layer", "interaction", "readout"]
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def model_hash(model: HIENet) -> str:
    """sha256 of the config and the weights (dtype- and device-independent: float64 bytes)."""
    h = hashlib.sha256(json.dumps(model.config, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu()
        h.update((t.double() if t.is_floating_point() else t).contiguous().numpy().tobytes())
    return "sha256:" + h.hexdigest()


def exchange_widths(model: HIENet) -> List[int]:
    """Width of the node features entering each equivariant block: what a multi-rank run
    copies from owners to ghosts before the block (FORMAT.md, "Stage methods")."""
    # o3.Irreps(...): e3nn's scripting leaves irreps attributes as plain tuples
    return [int(o3.Irreps(block.irreps_in).dim) for block in model.interactions]


def metadata(model: HIENet, dtype: str, digest: str) -> Dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "hienet_version": __version__,
        "cutoff": float(model.cutoff),
        "num_message_passing_layers": int(model.num_message_passing_layers),
        "species": list(model.species),
        "dtype": dtype,
        "torch_version": torch.__version__,
        "model_hash": digest,
        "exchange_widths": exchange_widths(model),
        "units": {"energy": "eV", "length": "Å"},
        "config": model.config,
    }


def export_model(model: HIENet, path, dtype: str = "float64", device: str = "cpu") -> Dict[str, Any]:
    """Script, freeze and save `model` to `path`; return the metadata written."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    check_writable_file(path, "output file")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"the model's {name} has non-finite values: refusing to export a broken model")
    digest = model_hash(model)
    model = model.to(dtype=_DTYPES[dtype], device=device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    scripted = script(DeployableHIENet(model).eval())
    frozen = torch.jit.freeze(scripted, preserved_attrs=STAGE_METHODS)
    meta = metadata(model, dtype, digest)
    # The digest of the records is known only after saving: save once to memory, then again
    # with the metadata (torch.jit.save writes the same records again, checked below).
    draft = io.BytesIO()
    torch.jit.save(frozen, draft)
    meta[DIGEST_KEY] = archive_digest(draft.getvalue())
    with atomic_write(path, "output file") as tmp:  # never a half-written model file
        torch.jit.save(frozen, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta, indent=1)})
        if archive_digest(tmp) != meta[DIGEST_KEY]:
            raise RuntimeError("torch.jit.save wrote different records on a second save; "
                               "cannot compute the archive digest")
    return meta
