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
from hienet.model.config import IMPLEMENTATION_KEYS

from .deployable import DeployableHIENet

FORMAT_VERSION = 2
METADATA_FILE = "metadata.json"
STAGE_METHODS = ["embed", "edge_features", "invariant_layer", "interaction", "readout"]
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: convolution kernels an exported file can use; the first is the default (fastest, exact)
KERNELS = ("fused", "e3nn")


def model_hash(model: HIENet) -> str:
    """sha256 of the config and the weights (dtype- and device-independent: float64 bytes).

    Implementation choices (the convolution kernel) are left out: same function, same hash."""
    config = {k: v for k, v in model.config.items() if k not in IMPLEMENTATION_KEYS}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
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


def custom_ops(module: torch.jit.ScriptModule) -> List[str]:
    """Custom operators (outside aten/prim) that the module's methods call, e.g. hienet::convolution."""
    found = set()

    def visit(block):
        for node in block.nodes():
            namespace = node.kind().split("::")[0]
            if namespace not in _BUILTIN_NAMESPACES:
                found.add(node.kind())
            for sub in node.blocks():
                visit(sub)

    for name in ["forward"] + STAGE_METHODS:
        method = getattr(module, name, None)
        if method is not None and hasattr(method, "graph"):
            visit(method.graph)
    return sorted(found)


_BUILTIN_NAMESPACES = {"aten", "prim", "onnx", "quantized", "profiler", "_caffe2"}


def metadata(
    model: HIENet, dtype: str, digest: str, convolution: str = "e3nn", ops: List[str] = ()
) -> Dict[str, Any]:
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
        "config": dict(model.config),
        "convolution": convolution,
        "custom_ops": list(ops),
    }


def rebuilt(model: HIENet, convolution: str) -> HIENet:
    """A new HIENet with `model`'s config and weights (float64) and the given kernel.

    Scripting replaces submodules in place, so the caller's model is left alone; and a new
    module, unlike `copy.deepcopy`, keeps e3nn's generated code as the original has it (e3nn
    regenerates it on copy, folding constants in the default dtype)."""
    config = {**model.config, "convolution": convolution}
    fresh = HIENet(config).to(torch.float64)
    fresh.load_state_dict({k: v.detach().cpu().to(torch.float64) if v.is_floating_point() else v
                           for k, v in model.state_dict().items()})
    return fresh


def export_model(
    model: HIENet, path, dtype: str = "float64", device: str = "cpu", convolution: str = "fused"
) -> Dict[str, Any]:
    """Script, freeze and save `model` to `path`; return the metadata written.

    `convolution`: "fused" (torch.ops.hienet.convolution; loaders need libhienet_ops.so, which
    hienet's Python package, C++ runtime and LAMMPS plugin all load) or "e3nn".
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    check_writable_file(path, "output file")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"the model's {name} has non-finite values: refusing to export a broken model")
    if convolution not in KERNELS:
        raise ValueError(f"convolution kernel must be one of {list(KERNELS)}, got {convolution!r}")
    digest = model_hash(model)
    model = rebuilt(model, convolution).to(dtype=_DTYPES[dtype], device=device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    scripted = script(DeployableHIENet(model).eval())
    frozen = torch.jit.freeze(scripted, preserved_attrs=STAGE_METHODS)
    meta = metadata(model, dtype, digest, convolution, custom_ops(frozen))
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
