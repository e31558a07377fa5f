"""The fused convolution kernel: `torch.ops.hienet.convolution` driven by an e3nn TensorProduct.

    summed_i = Σ_{e=(i,j)} TP_uvu(h_j, Y_e; w_e)        (one operator, no per-edge messages)

The e3nn `o3.TensorProduct` of the block stays the reference and the source of truth: the
operator gets its paths (layout offsets) and, for every path, the coefficients C_p[i, j, k]
that e3nn itself applies (Clebsch-Gordan × path weight, in e3nn's own rounding: its w3j
buffers keep the precision they were built in, usually float32), read off the module by
evaluating it on unit inputs. So both kernels compute the same function of the same weights.
"""
from typing import Tuple

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn

#: the convolution kernels a model can use; "auto" = "fused" when the operator library loads
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


def fused_plan(tp: o3.TensorProduct) -> Tuple[torch.Tensor, torch.Tensor]:
    """(paths [P, 8] int64, coefficients float64) of a 'uvu' TensorProduct with per-edge weights."""
    if tp.shared_weights or tp.internal_weights:
        raise ValueError("the fused convolution needs per-edge weights (shared_weights=False)")
    in1, in2, out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
    s1, s2, so = in1.slices(), in2.slices(), out.slices()
    rows, blocks, weight_offset = [], [], 0
    for ins in tp.instructions:
        (mul, ir1), (mul2, ir2), (_, ir3) = in1[ins.i_in1], in2[ins.i_in2], out[ins.i_out]
        if ins.connection_mode != "uvu" or not ins.has_weight or mul2 != 1:
            raise ValueError(
                "the fused convolution supports weighted 'uvu' paths with a multiplicity-1 "
                f"second input, got {ins.connection_mode!r} with {mul2}x{ir2}"
            )
        d1, d2, d3 = ir1.dim, ir2.dim, ir3.dim
        rows.append([mul, d1, d2, d3, s1[ins.i_in1].start, s2[ins.i_in2].start, so[ins.i_out].start, weight_offset])
        # unit inputs, channel u = 0, this path's weight only: out = C_p[i, j, :]
        n = d1 * d2
        x1 = torch.zeros(n, in1.dim, dtype=torch.float64)
        x2 = torch.zeros(n, in2.dim, dtype=torch.float64)
        w = torch.zeros(n, tp.weight_numel, dtype=torch.float64)
        if mul > 0:
            r = torch.arange(n)
            x1[r, s1[ins.i_in1].start + r // d2] = 1.0
            x2[r, s2[ins.i_in2].start + r % d2] = 1.0
            w[:, weight_offset] = 1.0
            c = _evaluate_in_float64(tp, x1, x2, w)[:, so[ins.i_out].start : so[ins.i_out].start + d3]
        else:
            c = torch.zeros(n, d3, dtype=torch.float64)
        blocks.append(c.reshape(-1))
        weight_offset += mul * mul2
    if weight_offset != tp.weight_numel:
        raise ValueError(f"paths use {weight_offset} weights, the TensorProduct has {tp.weight_numel}")
    paths = torch.tensor(rows, dtype=torch.int64).reshape(-1, len(PATH_COLUMNS))
    coefficients = torch.cat(blocks) if blocks else torch.zeros(0, dtype=torch.float64)
    return paths, coefficients


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

    def extra_repr(self) -> str:
        return f"paths={self.paths.shape[0]}, out_dim={self.out_dim}"
