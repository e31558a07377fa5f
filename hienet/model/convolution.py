"""The fused convolution kernel: `torch.ops.hienet.convolution` driven by an e3nn TensorProduct.

    summed_i = Σ_{e=(i,j)} TP_uvu(h_j, Y_e; w_e)        (one operator, no per-edge messages)

The e3nn `o3.TensorProduct` of the block stays the reference and the source of truth: the
operator gets its paths (layout offsets) and, for every path, the coefficients C_p[i, j, k]
that e3nn itself applies (Clebsch-Gordan × path weight, in e3nn's own rounding: its w3j
buffers keep the precision they were built in, usually float32), read off the module by
evaluating it on unit inputs. So both kernels compute the same function of the same weights.
"""
from typing import List, Tuple

import weakref

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn

#: the convolution kernels a model can use; "auto" = "fused" when the operator library loads
#: (on a device without kernels for the operator, e.g. a GPU with a CPU-only build, a "fused"
#: model runs its e3nn kernel: `fused_runs_on`)
KERNELS = ("auto", "fused", "e3nn")
#: columns of the `paths` table (see cpp/ops/convolution.h)
PATH_COLUMNS = ("mul", "dim_in", "dim_sh", "dim_out", "x_offset", "sh_offset", "out_offset", "weight_offset")


def resolve_kernel(kernel: str) -> str:
    """'fused' or 'e3nn' for a kernel name; 'auto' picks 'fused' if the operators load."""
    if kernel not in KERNELS:
        raise ValueError(f"convolution kernel must be one of {list(KERNELS)}, got {kernel!r}")
    from .. import ops

    if kernel == "auto":
        return "fused" if ops.available() else "e3nn"
    if kernel == "fused":
        ops.load()
    return kernel


def fused_runs_on(device: torch.device) -> bool:
    """True where the fused operator has kernels: always on the CPU; on a GPU when the operator
    library was built with CUDA kernels (asked of torch's dispatcher at run time, so a model
    exported on a CPU machine uses them wherever they exist). Scriptable."""
    return device.type == "cpu" or torch.ops.hienet.convolution_available(device)


_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def fused_plan(tp: o3.TensorProduct) -> Tuple[torch.Tensor, torch.Tensor]:
    """(paths [P, 8] int64, coefficients float64) of a 'uvu' TensorProduct with per-edge weights.

    Remembered per TensorProduct (and the dtype of its constants), so that switching kernels
    back and forth reads the coefficients off once."""
    dtypes = tuple(b.dtype for b in tp.buffers())
    cached = _PLANS.get(tp)
    if cached is not None and cached[0] == dtypes:
        return cached[1], cached[2]
    paths, coefficients = _read_plan(tp)
    _PLANS[tp] = (dtypes, paths, coefficients)
    return paths, coefficients


def _read_plan(tp: o3.TensorProduct) -> Tuple[torch.Tensor, torch.Tensor]:
    if tp.shared_weights or tp.internal_weights:
        raise ValueError("the fused convolution needs per-edge weights (shared_weights=False)")
    in1, in2, out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
    s1, s2, so = in1.slices(), in2.slices(), out.slices()
    rows, probes, weight_offset = [], [], 0
    for ins in tp.instructions:
        (mul, ir1), (mul2, ir2), (_, ir3) = in1[ins.i_in1], in2[ins.i_in2], out[ins.i_out]
        if ins.connection_mode != "uvu" or not ins.has_weight or mul2 != 1:
            raise ValueError(
                "the fused convolution supports weighted 'uvu' paths with a multiplicity-1 "
                f"second input, got {ins.connection_mode!r} with {mul2}x{ir2}"
            )
        rows.append([mul, ir1.dim, ir2.dim, ir3.dim, s1[ins.i_in1].start, s2[ins.i_in2].start,
                     so[ins.i_out].start, weight_offset])
        probes.append((ins, ir1.dim, ir2.dim, ir3.dim, weight_offset, mul))
        weight_offset += mul * mul2
    if weight_offset != tp.weight_numel:
        raise ValueError(f"paths use {weight_offset} weights, the TensorProduct has {tp.weight_numel}")
    blocks = []
    for first in range(0, len(probes), _PROBE_PATHS):
        blocks += _probe(tp, probes[first : first + _PROBE_PATHS])
    paths = torch.tensor(rows, dtype=torch.int64).reshape(-1, len(PATH_COLUMNS))
    coefficients = torch.cat(blocks) if blocks else torch.zeros(0, dtype=torch.float64)
    return paths, coefficients


_PROBE_PATHS = 8  # paths read off per evaluation of the TensorProduct (bounds its memory)


def _probe(tp: o3.TensorProduct, probes) -> List[torch.Tensor]:
    """C_p[i, j, k] of each probed path, flattened: unit inputs at channel u = 0, one row per
    (i, j), the path's own weight only, so the path's output slot holds C_p[i, j, :]."""
    in1, in2, out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
    s1, s2, so = in1.slices(), in2.slices(), out.slices()
    n = sum(d1 * d2 for _, d1, d2, _, _, _ in probes)
    x1 = torch.zeros(n, in1.dim, dtype=torch.float64)
    x2 = torch.zeros(n, in2.dim, dtype=torch.float64)
    w = torch.zeros(n, tp.weight_numel, dtype=torch.float64)
    row = 0
    for ins, d1, d2, _, weight_offset, mul in probes:
        r = torch.arange(d1 * d2)
        if mul > 0:
            x1[row + r, s1[ins.i_in1].start + r // d2] = 1.0
            x2[row + r, s2[ins.i_in2].start + r % d2] = 1.0
            w[row : row + d1 * d2, weight_offset] = 1.0
        row += d1 * d2
    result = _evaluate_in_float64(tp, x1, x2, w)
    blocks, row = [], 0
    for ins, d1, d2, d3, _, _ in probes:
        start = so[ins.i_out].start
        blocks.append(result[row : row + d1 * d2, start : start + d3].reshape(-1))
        row += d1 * d2
    return blocks


def _evaluate_in_float64(tp: o3.TensorProduct, x1, x2, w) -> torch.Tensor:
    """tp(x1, x2, w) in float64 with tp's own constants.

    Not on a copy: e3nn regenerates its code when copied or unpickled, and the regenerated
    code folds path weight × w3j into a constant of the default dtype, which is not what the
    module itself computes. A float32 module goes to float64 and back, which is lossless.
    """
    buffers = [b for b in tp.buffers() if b.is_floating_point()]
    dtype = buffers[0].dtype if buffers else torch.float64
    device = buffers[0].device if buffers else torch.device("cpu")
    try:
        tp.to(torch.float64)
        with torch.no_grad():
            return tp(x1.to(device), x2.to(device), w.to(device)).cpu()
    finally:
        tp.to(dtype)


@compile_mode("script")
class FusedConvolution(nn.Module):
    """(x (N, in), edge_index (2, E), sh (E, dim Y), weight (E, W)) -> Σ over each centre's edges.

    `radial(x, edge_index, sh, hidden, linear)` is the same with weight = hidden @ linear (the
    radial MLP's output layer) made inside the operator, which then keeps only `hidden` for
    the backward instead of the (E, W) weights.

    `paths` and `coefficients` are plain attributes, not buffers: they are no part of the
    state dict (checkpoints are the same for both kernels) and `.to(dtype)` does not round the
    float64 coefficients (they are cast at each call).
    """

    def __init__(self, tp: o3.TensorProduct):
        super().__init__()
        paths, coefficients = fused_plan(tp)
        self.paths = paths
        self.coefficients = coefficients
        self.out_dim = int(tp.irreps_out.dim)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        coefficients = self.coefficients.to(dtype=x.dtype)
        return torch.ops.hienet.convolution(
            x, sh, weight, edge_index, self.paths, coefficients, self.out_dim
        )

    @torch.jit.export
    def radial(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        sh: torch.Tensor,
        hidden: torch.Tensor,
        linear: torch.Tensor,
    ) -> torch.Tensor:
        coefficients = self.coefficients.to(dtype=x.dtype)
        return torch.ops.hienet.convolution_radial(
            x, sh, hidden, linear, edge_index, self.paths, coefficients, self.out_dim
        )

    def extra_repr(self) -> str:
        return f"paths={self.paths.shape[0]}, out_dim={self.out_dim}"
