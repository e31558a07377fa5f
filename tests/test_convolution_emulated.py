"""The GPU kernels of hienet::convolution, run on the CPU, against the CPU operator.

libhienet_ops_emulated.so (cpp/ops/cuda/convolution_emulated.cpp) runs the block bodies the
CUDA kernels run (cpp/ops/cuda/convolution_body.h) with CUDA's blocks and threads as loops,
behind the same torch-side code as the CUDA operator (checks, plan, sorting, launch shape).
So this checks the arithmetic and the indexing of the CUDA path without a GPU: HIENet-V3's
and si-demo's block shapes, a layout with shared slices, unused columns and an empty path,
irreps beyond l = 3 (the second kernel variant), float64 and float32, parity on and off,
forward and every backward output for every output_mask, and the CPU operator's input checks.

Each case also runs with few threads, tiny edge tiles (so a centre's edges span several tiles)
and threads and blocks in reverse order: the same numbers, and bit for bit the same as the
forward order (a phase whose threads depend on each other, or blocks that share an output
element, would differ). The emulator fills shared memory and the outputs with NaN first and
guards the end of shared memory, so a missed write or an overrun fails too.
"""
import itertools
from pathlib import Path

import pytest
import torch
from e3nn import o3

import hienet
from hienet import ops
from hienet.checkpoint import load_model
from hienet.model.config import PRESETS
from hienet.pretrained import bundled_model_path
from test_convolution_op import ODD, V3_SMALL, block

pytestmark = pytest.mark.skipif(not ops.available(), reason=f"no operator library: {ops.load_error()}")

EMULATED = Path(hienet.__file__).resolve().parent / "libhienet_ops_emulated.so"
V3 = ["384x0e"] + PRESETS["hienet-v3"]["hidden_irreps"]
MASKS = list(itertools.product([False, True], repeat=3))
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5}


@pytest.fixture(scope="module", autouse=True)
def emulated():
    """The emulated kernels; built with libhienet_ops.so, so missing is a broken build."""
    if not EMULATED.is_file():
        pytest.fail(f"{EMULATED} is missing: the build makes it with libhienet_ops.so (make venv)")
    torch.ops.load_library(str(EMULATED))


class Layout:
    """A block's operator inputs apart from the graph: paths, coefficients and widths."""

    def __init__(self, paths, coefficients, x_dim, sh_dim, weight_dim, out_dim):
        self.paths, self.coefficients = paths, coefficients
        self.x_dim, self.sh_dim, self.weight_dim, self.out_dim = x_dim, sh_dim, weight_dim, out_dim


def from_block(irreps_in, irreps_out, parity, last, lmax=3, scale=1):
    """The layout of an e3nn block (test_convolution_op.block); `scale` multiplies every
    channel count, which scales mul and the x, output and weight offsets and leaves the
    coefficients as they are (HIENet-V3 = V3_SMALL x 16, without building its e3nn modules)."""
    b = block(irreps_in, irreps_out, parity, last, torch.float64, lmax)
    tp, paths = b.tensor_product, b.fused.paths.clone()
    paths[:, [0, 4, 6, 7]] *= scale
    return Layout(paths, b.fused.coefficients, scale * tp.irreps_in1.dim, tp.irreps_in2.dim,
                  scale * tp.weight_numel, scale * b.fused.out_dim)


def v3_layout(k, parity):
    layout = from_block(V3_SMALL[k], V3_SMALL[k + 1], parity, k == 3, scale=16)
    assert layout.x_dim == o3.Irreps(V3[k]).dim    # the scaled layout is HIENet-V3's
    return layout


def si_demo_layout(k):
    model = load_model(bundled_model_path("si-demo"))
    conv = model.interactions[k].fused
    tp = model.interactions[k].tensor_product
    return Layout(conv.paths, conv.coefficients, tp.irreps_in1.dim, tp.irreps_in2.dim,
                  tp.weight_numel, conv.out_dim)


def synthetic_layout():
    """Paths that share x and output slices, a path with mul 0, x, sh and output columns no
    path touches, random dense coefficients."""
    rows = [  # mul, d1, d2, d3, x, sh, out, weight
        [2, 3, 3, 5, 0, 1, 0, 0],
        [2, 3, 5, 5, 0, 4, 0, 2],     # same x slice and output slice as path 0
        [3, 1, 3, 3, 6, 1, 10, 4],
        [0, 1, 1, 1, 0, 0, 0, 7],     # no channels: skipped, its coefficient still counted
        [3, 1, 1, 3, 6, 0, 10, 7],    # same slices as path 2
    ]
    paths = torch.tensor(rows, dtype=torch.int64)
    count = int((paths[:, 1] * paths[:, 2] * paths[:, 3]).sum())
    coefficients = torch.randn(count, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    return Layout(paths, coefficients, x_dim=11, sh_dim=10, weight_dim=10, out_dim=21)


LAYOUTS = {
    **{f"v3-block{k}-parity{int(p)}": (lambda k=k, p=p: v3_layout(k, p)) for k in range(4) for p in (False, True)},
    **{f"si-demo-block{k}": (lambda k=k: si_demo_layout(k)) for k in range(2)},
    **{f"odd-parity{int(p)}": (lambda p=p: from_block(ODD[0], ODD[1], p, False)) for p in (False, True)},
    "l4": lambda: from_block("3x0e+2x1e+1x4e", "3x0e+2x1e+1x4e", True, False, lmax=4),
    "synthetic": synthetic_layout,
}


def graph(layout, dtype, seed=0, num_nodes=6, num_edges=14, hub=5):
    """Random features and edges in random order: the last node has no edges, node 0 only
    sends, node 1 only receives, node 2 is the centre of at least `hub` edges (several tiles
    when tiles are small). Returns x, sh, weight, edge_index, grad_out."""
    g = torch.Generator().manual_seed(seed)
    N, E = num_nodes, num_edges
    centre = torch.randint(1, N - 1, (E,), generator=g)
    centre[:hub] = 2
    neighbour = torch.randint(0, N - 1, (E,), generator=g)
    neighbour[neighbour == 1] = 3
    perm = torch.randperm(E, generator=g)
    edge_index = torch.stack([centre, neighbour])[:, perm]
    x = torch.randn(N, layout.x_dim, dtype=dtype, generator=g)
    sh = torch.randn(E, layout.sh_dim, dtype=dtype, generator=g)
    weight = torch.randn(E, layout.weight_dim, dtype=dtype, generator=g)
    grad_out = torch.randn(N, layout.out_dim, dtype=dtype, generator=g)
    return x, sh, weight, edge_index, grad_out


def relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def assert_close(ours, ref, tol, what):
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, what
    assert torch.isfinite(ours).all(), f"{what}: not written in full"
    assert relative_error(ours, ref) <= tol, (what, relative_error(ours, ref))


LAUNCHES = {"default": {}, "small tiles, odd threads, reversed": dict(tile=2, threads=45, reverse=True)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_emulated_kernels_match_the_cpu_operator(name, dtype):
    layout = LAYOUTS[name]()
    x, sh, weight, edge_index, grad_out = graph(layout, dtype)
    args = (layout.paths, layout.coefficients.to(dtype))
    tol = TOLERANCE[dtype]
    ref = torch.ops.hienet.convolution(x, sh, weight, edge_index, *args, layout.out_dim)
    assert (ref[-1] == 0).all() and (ref[0] == 0).all()    # no incoming edges
    ref_grads = {mask: torch.ops.hienet.convolution_backward(grad_out, x, sh, weight, edge_index,
                                                             *args, list(mask)) for mask in MASKS}
    results = {}
    for launch, options in LAUNCHES.items():
        out = torch.ops.hienet_emulated.convolution(x, sh, weight, edge_index, *args,
                                                    layout.out_dim, **options)
        assert_close(out, ref, tol, (launch, "out"))
        results[launch] = [out]
        for mask in MASKS if launch == "default" else [(True, True, True)]:
            grads = torch.ops.hienet_emulated.convolution_backward(
                grad_out, x, sh, weight, edge_index, *args, list(mask), **options)
            for wanted, name_, ours, theirs in zip(mask, ("grad_x", "grad_sh", "grad_weight"),
                                                   grads, ref_grads[mask]):
                if not wanted:
                    assert ours is None and theirs is None
                    continue
                assert_close(ours, theirs, tol, (launch, mask, name_))
            results[launch] += list(grads) if mask == (True, True, True) else []
    # threads and blocks in reverse order: bit for bit the numbers of the forward order
    reverse = [torch.ops.hienet_emulated.convolution(x, sh, weight, edge_index, *args,
                                                     layout.out_dim, reverse=True)]
    reverse += torch.ops.hienet_emulated.convolution_backward(
        grad_out, x, sh, weight, edge_index, *args, [True, True, True], reverse=True)
    for ours, first in zip(reverse, results["default"]):
        assert torch.equal(ours, first)


def test_empty_graphs_and_no_paths_give_zeros_like_the_cpu_operator():
    layout = from_block(V3_SMALL[1], V3_SMALL[2], False, False)
    x, sh, weight, edge_index, grad_out = graph(layout, torch.float64)
    args = (layout.paths, layout.coefficients)
    cases = {
        "no edges": (x, sh[:0], weight[:0], edge_index[:, :0], grad_out, args),
        "no nodes": (x[:0], sh[:0], weight[:0], edge_index[:, :0], grad_out[:0], args),
        "no paths": (x, sh, weight[:, :0], edge_index, grad_out,
                     (layout.paths[:0], layout.coefficients[:0])),
    }
    for case, (x_, sh_, w_, ei_, g_, a_) in cases.items():
        for op in ("hienet", "hienet_emulated"):
            out = getattr(torch.ops, op).convolution(x_, sh_, w_, ei_, *a_, layout.out_dim)
            assert out.shape == (x_.shape[0], layout.out_dim) and not out.any(), (case, op)
            grads = getattr(torch.ops, op).convolution_backward(g_, x_, sh_, w_, ei_, *a_, [True] * 3)
            for grad, like in zip(grads, (x_, sh_, w_)):
                assert grad.shape == like.shape and not grad.any(), (case, op)


def error(fn):
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).splitlines()[0]


def test_bad_input_gives_the_cpu_operators_errors():
    layout = from_block(V3_SMALL[1], V3_SMALL[2], False, False)
    x, sh, weight, edge_index, grad_out = graph(layout, torch.float64)
    p, c, d = layout.paths, layout.coefficients, layout.out_dim
    outside = edge_index.clone()
    outside[1, 7] = 6
    negative = edge_index.clone()
    negative[0, 3] = -1
    overlap = p.clone()
    overlap[1, 6] = overlap[0, 6] + 1    # output slices that overlap without being equal
    shared_weight = p.clone()
    shared_weight[1, 7] = shared_weight[0, 7]
    zero_dim = p.clone()
    zero_dim[2, 2] = 0
    cases = {
        "index outside": ((x, sh, weight, outside, p, c, d), "edge 7 has node index 6, outside 0..5"),
        "negative index": ((x, sh, weight, negative, p, c, d), "edge 3 has node index -1"),
        "edge_index shape": ((x, sh, weight, edge_index[:, :5], p, c, d), "edge_index must be int64"),
        "edge_index dtype": ((x, sh, weight, edge_index.int(), p, c, d), "edge_index must be int64"),
        "dtype": ((x, sh.float(), weight, edge_index, p, c, d), "one dtype"),
        "integer x": ((x.long(), sh, weight, edge_index, p, c, d), "float32 or float64"),
        "rows": ((x, sh[:5], weight, edge_index, p, c, d), "one per edge"),
        "1-D x": ((x[0], sh, weight, edge_index, p, c, d), "must be 2-D"),
        "narrow x": ((x[:, :10], sh, weight, edge_index, p, c, d), "reads x columns beyond"),
        "narrow sh": ((x, sh[:, :3], weight, edge_index, p, c, d), "reads sh columns beyond"),
        "out_dim": ((x, sh, weight, edge_index, p, c, 10), "writes columns beyond out_dim"),
        "negative out_dim": ((x, sh, weight, edge_index, p, c, -1), "out_dim must be >= 0"),
        "narrow weight": ((x, sh, weight[:, :5], edge_index, p, c, d), "reads weight columns beyond"),
        "wide weight": ((x, sh, torch.cat([weight, weight[:, :1]], 1), edge_index, p, c, d), "belongs to no path"),
        "shared weight": ((x, sh, weight, edge_index, shared_weight, c, d), "share weight column"),
        "few coefficients": ((x, sh, weight, edge_index, p, c[:-10], d), "too few for the paths"),
        "many coefficients": ((x, sh, weight, edge_index, p, torch.cat([c, c[:1]]), d), "the paths need"),
        "2-D coefficients": ((x, sh, weight, edge_index, p, c[None], d), "coefficients must be 1-D"),
        "zero dimension": ((x, sh, weight, edge_index, zero_dim, c, d), "has a negative entry or a zero dimension"),
        "overlap": ((x, sh, weight, edge_index, overlap, c, d), "overlap"),
        "paths shape": ((x, sh, weight, edge_index, p[:, :7], c, d), "paths must be"),
    }
    for case, (args, expected) in cases.items():
        cpu = error(lambda: torch.ops.hienet.convolution(*args))
        emulated = error(lambda: torch.ops.hienet_emulated.convolution(*args))
        assert expected in cpu and expected in emulated, (case, cpu, emulated)
        if case != "paths shape":    # the CPU operator also wants the table on the CPU
            assert cpu == emulated, case
    backward = (grad_out[:5], x, sh, weight, edge_index, p, c, [True] * 3)
    cpu = error(lambda: torch.ops.hienet.convolution_backward(*backward))
    emulated = error(lambda: torch.ops.hienet_emulated.convolution_backward(*backward))
    assert "grad_out must be a CPU tensor" in cpu and cpu == emulated


def test_irreps_beyond_l7_are_refused_by_name():
    paths = torch.tensor([[2, 17, 1, 17, 0, 0, 0, 0]])
    coefficients = torch.randn(17 * 17, dtype=torch.float64)
    x, sh, weight = torch.randn(3, 34, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1], [1, 2]])
    assert torch.ops.hienet.convolution(x, sh, weight, edge_index, paths, coefficients, 34).shape == (3, 34)
    with pytest.raises(RuntimeError, match="path 0 has an irrep of dimension 17; the GPU kernels handle dimensions up to 15"):
        torch.ops.hienet_emulated.convolution(x, sh, weight, edge_index, paths, coefficients, 34)


def test_an_edge_index_is_checked_again_after_it_changes():
    """The index check runs once per edge_index tensor and node count (it costs a copy to the
    host on a GPU), and again after an in-place write or with another node count."""
    layout = from_block(V3_SMALL[1], V3_SMALL[2], False, False)
    x, sh, weight, edge_index, _ = graph(layout, torch.float64)
    args = (layout.paths, layout.coefficients, layout.out_dim)
    op = torch.ops.hienet_emulated.convolution
    first = op(x, sh, weight, edge_index, *args)
    assert torch.equal(op(x, sh, weight, edge_index, *args), first)
    with pytest.raises(RuntimeError, match=r"edge \d+ has node index 4, outside 0..3"):
        op(x[:4], sh, weight, edge_index, *args)    # fewer nodes
    edge_index[1, 3] = 99
    with pytest.raises(RuntimeError, match="edge 3 has node index 99, outside 0..5"):
        op(x, sh, weight, edge_index, *args)
    edge_index[1, 3] = 0
    with torch.inference_mode():    # no version counter: checked every time
        fresh = edge_index.clone()
        op(x, sh, weight, fresh, *args)
        fresh[0, 2] = -1
        with pytest.raises(RuntimeError, match="edge 2 has node index -1"):
            op(x, sh, weight, fresh, *args)
