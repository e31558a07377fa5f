"""The invariant graph-transformer layer of HIENet (Comformer-style node attention).

For an edge from source s to target t (messages are summed at t):

    q   = W_q x_t,  k_t = W_k x_t,  k_s = W_k x_s,  v_t = W_v x_t,  v_s = W_v x_s
    e   = W_e b(r)                                   (b = radial embedding)
    α   = q ⊙ MLP_k([k_t, k_s, e]) / sqrt(C)
    m   = MLP_m([v_t, v_s, e]) ⊙ sigmoid(LayerNorm_α(α))        (no softmax)

(the first layer of each MLP is applied block-wise, its node blocks per node: `_edge_linear`)
    out = W_o Σ_s m

followed by the double (reset/update) gate of the node state:

    ρ = σ(W_ρ x),  z = σ(W_z x)
    x' = (1 - z) ⊙ (ρ ⊙ x) + z ⊙ [(1 - z) ⊙ x + z ⊙ softplus(LayerNorm(out))]

In the official model the message does not vanish at the cutoff (W_e has a bias and the
node terms are not multiplied by the envelope), so the energy jumps when a pair crosses r_c.
With `smooth=True` every message is multiplied by the envelope u(r), which makes the layer,
and so the whole model, continuous with continuous forces at the cutoff.
"""
import math

import torch
from e3nn.util.jit import compile_mode
from torch import nn


def _mlp(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3 * channels, channels), nn.SiLU(), nn.Linear(channels, channels))


@compile_mode("script")
class InvariantAttentionLayer(nn.Module):
    """Scalar node features (N, C) → (N, C); reads edge_index (2, E) and radial (E, B)."""

    def __init__(self, channels: int, num_radial: int, smooth: bool = True):
        super().__init__()
        self.channels = channels
        self.smooth = smooth
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.edge = nn.Linear(num_radial, channels)
        self.key_mlp = _mlp(channels)
        self.message_mlp = _mlp(channels)
        self.attention_norm = nn.LayerNorm(channels)
        self.output = nn.Linear(channels, channels)
        self.output_norm = nn.LayerNorm(channels)
        self.reset_gate = nn.Linear(channels, channels)
        self.update_gate = nn.Linear(channels, channels)
        self.inv_sqrt_c = 1.0 / math.sqrt(channels)

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        radial: torch.Tensor,
        envelope: torch.Tensor,
        n_out: int = -1,
    ) -> torch.Tensor:
        # Official (PyG source→target) orientation: source = edge_index[0], target = edge_index[1].
        # n_out >= 0: only rows 0..n_out-1 are computed (every target must be < n_out); the
        # other rows are only read as sources (ghost atoms of a multi-rank graph).
        source, target = edge_index[0], edge_index[1]
        x_out = x if n_out < 0 else x[:n_out]
        q, k, v = self.query(x_out), self.key(x), self.value(x)
        e = self.edge(radial)
        first = self.key_mlp[0]
        pre = self._edge_linear(first.weight, first.bias, k, e, target, source)
        key = self.key_mlp[2](self.key_mlp[1](pre))
        alpha = q[target] * key * self.inv_sqrt_c
        first = self.message_mlp[0]
        pre = self._edge_linear(first.weight, first.bias, v, e, target, source)
        message = self.message_mlp[2](self.message_mlp[1](pre))
        message = message * torch.sigmoid(self.attention_norm(alpha))
        if self.smooth:
            message = message * envelope
        summed = torch.zeros_like(x_out).index_add_(0, target, message)
        out = self.output(summed)

        reset = torch.sigmoid(self.reset_gate(x_out))
        update = torch.sigmoid(self.update_gate(x_out))
        candidate = (1.0 - update) * x_out + update * nn.functional.softplus(self.output_norm(out))
        return (1.0 - update) * (reset * x_out) + update * candidate

    def _edge_linear(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        x: torch.Tensor,
        e: torch.Tensor,
        target: torch.Tensor,
        source: torch.Tensor,
    ) -> torch.Tensor:
        """The MLPs' first layer on [x_t, x_s, e], split by input block:
        W [x_t; x_s; e] + b = (W_t x)_t + (W_s x)_s + W_e e + b, so the node parts are computed
        per node (N rows, not E) and no (E, 3C) concatenation is made or kept for the backward."""
        c, h = self.channels, weight.shape[0]
        nodes = nn.functional.linear(x, torch.cat([weight[:, :c], weight[:, c : 2 * c]], dim=0))
        return nodes[:, :h][target] + nodes[:, h:][source] + nn.functional.linear(e, weight[:, 2 * c :], bias)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, smooth={self.smooth}"
