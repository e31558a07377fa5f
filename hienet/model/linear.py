"""e3nn's `o3.Linear`, evaluated with one matrix product per output irrep.

e3nn's Linear cuts its input into one slice per input irrep entry. After the convolution the
input has one entry per tensor-product path (34 in HIENet-V3's widest block), and the backward
of each slice is a zero-filled gradient as wide as the whole input: 34 fills and 33 additions
of an (N, 18048) tensor per block. Entries with the same irrep are adjacent (the paths'
output irreps are sorted), so they form one block "(Σ mul) x ir" in e3nn's layout, and the
Linear is one product per output entry with the weights of its paths stacked:

    out_o = Σ_s pw_s x_s W_s = x_block · [pw_1 W_1; pw_2 W_2; ...]

Same weights (the Linear's own parameter is passed in), same numbers to round-off.
"""
from typing import List, Tuple

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn


def grouped_plan(linear: o3.Linear):
    """(split sizes of the input, output entries, weight blocks), or None if not groupable.

    An output entry is (input piece, mul_in total, ir dim, mul_out, first block, last block);
    a weight block is (offset, mul_in, mul_out, path weight)."""
    if not (linear.internal_weights and linear.shared_weights) or linear.weight.dim() != 1:
        return None
    irreps_in, irreps_out = linear.irreps_in, linear.irreps_out
    if linear.bias_numel > 0:
        return None
    slices = irreps_in.slices()
    offsets, offset = [], 0
    for ins in linear.instructions:
        offsets.append(offset)
        offset += ins.path_shape[0] * ins.path_shape[1]
    # pieces of the input: maximal runs of adjacent entries with one irrep
    pieces: List[Tuple[int, int]] = []    # (first entry, last entry)
    for i, (_, ir) in enumerate(irreps_in):
        if pieces and irreps_in[pieces[-1][0]].ir == ir:
            pieces[-1] = (pieces[-1][0], i)
        else:
            pieces.append((i, i))
    piece_of = {i: p for p, (a, b) in enumerate(pieces) for i in range(a, b + 1)}
    sizes = [slices[b].stop - slices[a].start for a, b in pieces]
    outputs, blocks = [], []
    for i_out, (mul_out, ir_out) in enumerate(irreps_out):
        mine = sorted(
            (ins.i_in, k) for k, ins in enumerate(linear.instructions) if ins.i_out == i_out
        )
        if not mine:
            return None
        piece = piece_of[mine[0][0]]
        a, b = pieces[piece]
        if [i for i, _ in mine] != list(range(a, b + 1)):
            return None    # only part of a piece feeds this output: leave it to e3nn
        first = len(blocks)
        for i_in, k in mine:
            ins = linear.instructions[k]
            blocks.append((offsets[k], irreps_in[i_in].mul, mul_out, float(ins.path_weight)))
        mul_in = sum(irreps_in[i].mul for i in range(a, b + 1))
        outputs.append((piece, mul_in, ir_out.dim, mul_out, first, len(blocks)))
    return sizes, outputs, blocks


@compile_mode("script")
class GroupedLinear(nn.Module):
    """forward(x, weight, scale) = o3.Linear(x * scale) for the Linear this was built from, given
    its weight (`scale` is folded into the weights: no pass over x)."""

    def __init__(self, linear: o3.Linear):
        super().__init__()
        plan = grouped_plan(linear)
        if plan is None:
            raise ValueError(f"cannot group the inputs of {linear}")
        self.sizes: List[int] = plan[0]
        self.outputs: List[Tuple[int, int, int, int, int, int]] = plan[1]
        self.blocks: List[Tuple[int, int, int, float]] = plan[2]

    def forward(self, x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(x, self.sizes, dim=-1)
        scale = scale.to(weight.dtype)
        outs: List[torch.Tensor] = []
        for piece, mul_in, dim, mul_out, first, last in self.outputs:
            w = torch.cat(
                [
                    weight[offset : offset + m_in * m_out].view(m_in, m_out) * pw
                    for offset, m_in, m_out, pw in self.blocks[first:last]
                ],
                dim=0,
            ) * scale
            xp = pieces[piece].reshape(-1, mul_in, dim)
            outs.append(torch.einsum("zui,uw->zwi", xp, w).reshape(-1, mul_out * dim))
        return torch.cat(outs, dim=-1)
