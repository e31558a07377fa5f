"""The fused convolution operator (torch.ops.hienet.convolution) against e3nn.

Reference: e3nn's TensorProduct on gathered neighbour features, summed with index_add, i.e.
the model's "e3nn" kernel. The operator is checked on HIENet-V3's four block shapes (channel
counts divided by 16, the irreps and lmax kept), with proper and official (parity-blind)
irreps, in float64 and float32, in every instruction-set variant this CPU runs, and its first
and second derivatives by finite differences.
"""
import functools

import pytest
import torch
from e3nn import o3

from hienet import ops
from hienet.model.convolution import FusedConvolution
from hienet.model.equivariant import convolution_paths
from hienet.model.hienet import with_parity

pytestmark = pytest.mark.skipif(not ops.available(), reason=f"no operator library: {ops.load_error()}")

# HIENet-V3 (config preset "hienet-v3"): 384x0e -> the four hidden irreps, channels / 16.
V3_SMALL = ["24x0e", "32x0e+8x1e+4x2e", "32x0e+8x1e+4x2e+2x3e", "32x0e+8x1e+4x2e+2x3e", "32x0e"]
# odd channel counts: every vector-tail path of the kernels
ODD = ["5x0e+3x1e+1x2e+3x3e", "7x0e+1x1e+3x2e+1x3e"]


def capabilities():
    """Instruction-set variants of the kernels that this CPU runs."""
    usable = []
    for name in ("baseline", "avx2", "avx512"):
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("HIENET_CPU_CAPABILITY", name)
                ops.load()
                torch.ops.hienet.cpu_capability()
            usable.append(name)
        except RuntimeError:
            pass
    return usable


CAPABILITIES = capabilities()


class Conv:
    """The e3nn TensorProduct of an equivariant block and the operator built from it."""

    def __init__(self, irreps_in, irreps_out, parity, last, dtype, lmax=3):
        irreps_in, irreps_out = with_parity(irreps_in, parity), with_parity(irreps_out, parity)
        irreps_sh = o3.Irreps.spherical_harmonics(lmax, -1 if parity else 1)
        mid, instructions = convolution_paths(irreps_in, irreps_sh, irreps_out, last)
        self.irreps_in = irreps_in
        self.tensor_product = o3.TensorProduct(irreps_in, irreps_sh, mid, instructions,
                                               shared_weights=False, internal_weights=False).to(dtype)
        self.fused = FusedConvolution(self.tensor_product)


@functools.lru_cache(maxsize=None)
def block(irreps_in, irreps_out, parity, last, dtype, lmax=3):
    return Conv(irreps_in, irreps_out, parity, last, dtype, lmax)


def random_graph(b, num_nodes, num_edges, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, b.irreps_in.dim, dtype=dtype, generator=g)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    vec = torch.randn(num_edges, 3, dtype=dtype, generator=g)
    sh = o3.spherical_harmonics(b.tensor_product.irreps_in2, vec, normalize=True, normalization="component")
    weight = torch.randn(num_edges, b.tensor_product.weight_numel, dtype=dtype, generator=g)
    return x, edge_index, sh, weight


def e3nn_reference(b, x, edge_index, sh, weight):
    messages = b.tensor_product(x[edge_index[1]], sh, weight)
    out = torch.zeros(x.shape[0], messages.shape[1], dtype=x.dtype)
    return out.index_add(0, edge_index[0], messages)


def relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


SHAPES = [(V3_SMALL[k], V3_SMALL[k + 1], k == 3) for k in range(4)] + [(ODD[0], ODD[1], False)]


def test_every_instruction_set_variant_is_tested():
    assert "baseline" in CAPABILITIES
    assert ops.cpu_capability() in CAPABILITIES


@pytest.mark.parametrize("parity", [False, True])
@pytest.mark.parametrize("irreps_in, irreps_out, last", SHAPES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_operator_and_gradients_match_e3nn(monkeypatch, parity, irreps_in, irreps_out, last,
                                           dtype, tol):
    b = block(irreps_in, irreps_out, parity, last, dtype)
    inputs = [t.requires_grad_(t.is_floating_point()) for t in random_graph(b, 13, 90, dtype)]
    x, edge_index, sh, weight = inputs
    ref = e3nn_reference(b, x, edge_index, sh, weight)
    cotangent = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, sh, weight), cotangent)
    for capability in CAPABILITIES:
        monkeypatch.setenv("HIENET_CPU_CAPABILITY", capability)
        ours = b.fused(x, edge_index, sh, weight)
        assert relative_error(ours, ref) <= tol, capability
        grads = torch.autograd.grad(ours, (x, sh, weight), cotangent)
        for name, g, r in zip(("x", "sh", "weight"), grads, ref_grads):
            assert relative_error(g, r) <= tol, (capability, name)


@pytest.mark.parametrize("parity", [False, True])
def test_gradcheck_first_and_second_order(parity):
    b = block("2x0e+1x1e+1x2e", "2x0e+1x1e+1x2e", parity, False, torch.float64, lmax=2)
    x, edge_index, sh, weight = random_graph(b, 4, 9, torch.float64, seed=3)
    edge_index[0, :3] = 3    # a centre with several edges
    inputs = (x.requires_grad_(), sh.requires_grad_(), weight.requires_grad_())

    def fn(x, sh, weight):
        return b.fused(x, edge_index, sh, weight)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_radial_variant_equals_the_operator_on_the_product_to_second_order():
    """convolution_radial(x, sh, hidden, linear) = convolution(x, sh, hidden @ linear), keeping
    hidden instead of the weights: values, gradients and gradients of gradients."""
    b = block("2x0e+1x1e+1x2e", "2x0e+1x1e+1x2e", True, False, torch.float64, lmax=2)
    x, edge_index, sh, weight = random_graph(b, 4, 9, torch.float64, seed=4)
    hidden = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    linear = torch.randn(3, weight.shape[1], dtype=torch.float64, requires_grad=True)
    inputs = (x.requires_grad_(), sh.requires_grad_(), hidden, linear)
    f = b.fused

    def radial(x, sh, hidden, linear):
        return f.radial(x, edge_index, sh, hidden, linear)

    def plain(x, sh, hidden, linear):
        return f(x, edge_index, sh, hidden @ linear)

    results = []
    for fn in (radial, plain):
        out = fn(*inputs)
        first = torch.autograd.grad(out.pow(2).sum(), inputs, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in first), inputs)
        results.append((out, *first, *second))
    for ours, ref in zip(*results):
        assert relative_error(ours, ref) <= 1e-13
    assert torch.autograd.gradcheck(radial, inputs)
    assert torch.autograd.gradgradcheck(radial, inputs)
    with torch.no_grad():    # below autograd: the composite kernel
        assert relative_error(radial(*inputs), plain(*inputs)) <= 1e-14


def test_second_derivatives_match_e3nn():
    """The force-training path: d/dθ of a loss on first derivatives."""
    b = block(V3_SMALL[1], V3_SMALL[2], False, False, torch.float64)
    x, edge_index, sh, weight = (t.requires_grad_(t.is_floating_point())
                                 for t in random_graph(b, 11, 60, torch.float64))
    results = []
    for fn in (b.fused, lambda *a: e3nn_reference(b, *a)):
        out = fn(x, edge_index, sh, weight)
        first = torch.autograd.grad(out.pow(2).sum(), (x, sh, weight), create_graph=True)
        loss = sum((g * g).sum() for g in first)
        results.append(torch.autograd.grad(loss, (x, sh, weight)))
    for ours, ref in zip(*results):
        assert relative_error(ours, ref) <= 1e-12


def test_edge_order_and_thread_count_do_not_matter():
    b = block(V3_SMALL[1], V3_SMALL[2], True, False, torch.float64)
    x, edge_index, sh, weight = random_graph(b, 17, 200, torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = b.fused(x, edge_index, sh, weight)
        torch.set_num_threads(2)
        two = b.fused(x, edge_index, sh, weight)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)    # each centre sums its edges in one fixed order
    perm = torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(5))
    shuffled = b.fused(x, edge_index[:, perm], sh[perm], weight[perm])
    assert relative_error(shuffled, one) <= 1e-14


def test_empty_graphs_isolated_nodes_and_centres_without_edges():
    b = block(V3_SMALL[1], V3_SMALL[2], False, False, torch.float64)
    x, edge_index, sh, weight = random_graph(b, 6, 0, torch.float64)
    assert torch.equal(b.fused(x, edge_index, sh, weight), torch.zeros(6, b.fused.out_dim, dtype=torch.float64))
    x0 = x[:0].requires_grad_()
    out = b.fused(x0, edge_index, sh, weight)
    assert out.shape == (0, b.fused.out_dim)
    out.sum().backward()
    assert x0.grad.shape == x0.shape
    # node 0 sends but never receives, node 5 has no edges at all
    x, edge_index, sh, weight = random_graph(b, 6, 40, torch.float64)
    edge_index[0] = torch.where(edge_index[0] == 0, 1, edge_index[0])
    edge_index = torch.where(edge_index == 5, 2, edge_index)
    x.requires_grad_()
    ours = b.fused(x, edge_index, sh, weight)
    ref = e3nn_reference(b, x, edge_index, sh, weight)
    assert relative_error(ours, ref) <= 1e-12
    assert torch.all(ours[0] == 0) and torch.all(ours[5] == 0)
    (grad,) = torch.autograd.grad(ours.sum(), x)
    assert torch.all(grad[5] == 0) and torch.any(grad[0] != 0)


def test_bad_input_is_a_clear_error():
    b = block(V3_SMALL[1], V3_SMALL[2], False, False, torch.float64)
    x, edge_index, sh, weight = random_graph(b, 6, 10, torch.float64)
    f = b.fused
    op = torch.ops.hienet.convolution
    bad = edge_index.clone()
    bad[1, 7] = 6
    with pytest.raises(RuntimeError, match="edge 7 has node index 6, outside 0..5"):
        f(x, bad, sh, weight)
    with pytest.raises(RuntimeError, match="one dtype"):
        f(x, edge_index, sh.float(), weight)
    with pytest.raises(RuntimeError, match="one per edge"):
        f(x, edge_index, sh[:5], weight)
    with pytest.raises(RuntimeError, match="reads x columns beyond"):
        op(x[:, :10], sh, weight, edge_index, f.paths, f.coefficients, f.out_dim)
    with pytest.raises(RuntimeError, match="belongs to no path"):
        op(x, sh, torch.cat([weight, weight[:, :1]], 1), edge_index, f.paths, f.coefficients, f.out_dim)
    with pytest.raises(RuntimeError, match="HIENET_CPU_CAPABILITY must be"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HIENET_CPU_CAPABILITY", "sse9")
            f(x, edge_index, sh, weight)
