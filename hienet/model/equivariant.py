"""The NequIP-style equivariant interaction block used by HIENet.

    skip = Linear_sc(x)                                  (x → gate input irreps)
    h    = Linear_1(x)
    m_i  = Σ_j TP_uvu(h_j, Y(r̂_ij); w(b(r_ij))) / denominator     (j → centre i)
    x'   = Gate(Linear_2(m) + skip)

Y are the spherical harmonics of the edge direction (component normalisation) and w is a
radial MLP (no biases, SiLU) of the enveloped radial embedding b, so messages vanish
smoothly at the cutoff. The tensor product keeps every path whose output irrep has l no
larger than the block's output (only 0e for the last block). With `parity=False` (the
official HIENet setting) all irreps are labelled even, which admits parity-violating paths.

The sum over neighbours runs on one of two kernels with the same weights (`set_convolution`):
"e3nn" (per-edge messages from e3nn's TensorProduct, then index_add; the reference) or
"fused" (`torch.ops.hienet.convolution`, see `hienet.model.convolution`).
"""
from typing import List, Tuple

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from e3nn.util.jit import compile_mode
from torch import nn

from .convolution import FusedConvolution, fused_runs_on, resolve_kernel
from .linear import GroupedLinear

_SCALAR_ACT = {1: torch.nn.functional.silu, -1: torch.tanh}
_GATE_ACT = {1: torch.nn.functional.silu, -1: torch.tanh}


def make_gate(irreps_out: o3.Irreps) -> Gate:
    """Gate whose output is `irreps_out`: scalars activated, l > 0 irreps gated by new scalars."""
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    gate_parity = 1 if o3.Irrep("0e") in scalars else -1
    gates = o3.Irreps([(mul, (0, gate_parity)) for mul, _ in gated])
    return Gate(
        scalars,
        [_SCALAR_ACT[ir.p] for _, ir in scalars],
        gates,
        [_GATE_ACT[ir.p] for _, ir in gates],
        gated,
    )


def convolution_paths(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps, last: bool
) -> Tuple[o3.Irreps, List[Tuple[int, int, int, str, bool]]]:
    """'uvu' tensor-product paths and their sorted output irreps.

    A path is kept when its output l is at most the largest l of `irreps_out`; in the last
    block only even scalars (0e) are kept. Order and sorting follow the official model, so the
    radial-MLP weights map one to one.
    """
    lmax_out = max(ir.l for _, ir in irreps_out)
    mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir in ir_in * ir_sh:
                if ir.l > lmax_out or (last and ir != o3.Irrep("0e")):
                    continue
                instructions.append((i, j, len(mid), "uvu", True))
                mid.append((mul, ir))
    irreps_mid, perm, _ = o3.Irreps(mid).sort()
    instructions = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instructions]
    return irreps_mid, instructions


@compile_mode("script")
class EquivariantBlock(nn.Module):
    """Node features `irreps_in` → `irreps_out`; reads edge_index, radial (E, B), sh (E, dim Y)."""

    __jit_unused_properties__ = ["convolution"]

    def __init__(
        self,
        irreps_in,
        irreps_out,
        irreps_sh,
        num_radial: int,
        radial_hidden: List[int],
        denominator: float,
        last: bool = False,
        convolution: str = "e3nn",
    ):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        irreps_sh = o3.Irreps(irreps_sh)
        self.gate = make_gate(self.irreps_out)
        irreps_gate_in = self.gate.irreps_in

        self.skip = o3.Linear(self.irreps_in, irreps_gate_in, biases=False)
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in, biases=False)
        irreps_mid, instructions = convolution_paths(self.irreps_in, irreps_sh, self.irreps_out, last)
        self.tensor_product = o3.TensorProduct(
            self.irreps_in,
            irreps_sh,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.radial_mlp = FullyConnectedNet(
            [num_radial] + list(radial_hidden) + [self.tensor_product.weight_numel],
            torch.nn.functional.silu,
        )
        self.linear_out = o3.Linear(irreps_mid, irreps_gate_in, biases=False)
        last = getattr(self.radial_mlp, f"layer{len(self.radial_mlp) - 1}")
        self.radial_layers = len(self.radial_mlp)
        # e3nn's _Layer without activation: x @ (weight / (h_in var_in / var_out) ** 0.5)
        self.radial_out_norm = float((last.h_in * last.var_in / last.var_out) ** 0.5)
        self.register_buffer("denominator", torch.tensor(float(denominator), dtype=torch.float64))
        self.fused = None  # FusedConvolution and GroupedLinear when that kernel is on
        self.grouped_out = None
        self.set_convolution(convolution)

    def set_convolution(self, kernel: str) -> str:
        """Use the "fused" or "e3nn" kernel ("auto": fused if available); returns the one used.

        "fused" also evaluates linear_out one irrep at a time (`GroupedLinear`, same weights)."""
        kernel = resolve_kernel(kernel)
        fused = kernel == "fused"
        if fused == (self.fused is not None):
            return kernel
        self.fused = FusedConvolution(self.tensor_product) if fused else None
        self.grouped_out = GroupedLinear(self.linear_out) if fused else None
        return kernel

    @property
    def convolution(self) -> str:
        return "e3nn" if self.fused is None else "fused"

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        radial: torch.Tensor,
        sh: torch.Tensor,
        n_out: int = -1,
    ) -> torch.Tensor:
        # n_out >= 0: only rows 0..n_out-1 are computed (every centre must be < n_out); the
        # other rows are only gathered as neighbours (ghost atoms of a multi-rank graph).
        n = x.shape[0] if n_out < 0 else n_out
        skip = self.skip(x[:n])
        h = self.linear_in(x)
        # on a device without kernels for the operator (a CPU-only build on a GPU) e3nn runs
        if self.fused is not None and self.grouped_out is not None and fused_runs_on(h.device):
            # the radial MLP's output layer is applied inside the operator (e3nn's arithmetic:
            # hidden @ (weight / norm)), which then keeps no (E, W) weights for the backward
            hidden, linear = radial, radial
            for i, layer in enumerate(self.radial_mlp):
                if i + 1 < self.radial_layers:
                    hidden = layer(hidden)
                else:
                    linear = layer.weight / self.radial_out_norm
            # the operator returns a row per node of x; rows >= n have no edges (zeros)
            summed = self.fused.radial(h, edge_index, sh, hidden, linear)[:n]
            h = self.grouped_out(summed, self.linear_out.weight, 1.0 / self.denominator)
        else:
            centre, neighbour = edge_index[0], edge_index[1]
            messages = self.tensor_product(h[neighbour], sh, self.radial_mlp(radial))
            summed = torch.zeros(
                (n, messages.shape[1]), dtype=messages.dtype, device=messages.device
            ).index_add_(0, centre, messages)
            h = self.linear_out(summed / self.denominator)
        return self.gate(h + skip)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}"
