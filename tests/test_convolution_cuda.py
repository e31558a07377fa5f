"""The fused convolution on CUDA tensors.

Everywhere: the choice a model makes per device (the fused operator where torch's dispatcher
has kernels for it, else e3nn), checked with a stand-in CUDA registration and by forcing the
answer. On a GPU (marker `cuda`, run by tests/gpu/run.sh): the CUDA kernels against the CPU
operator (forward, every backward output and output_mask, second derivatives through the
autograd wrapper and convolution_radial), bit-identical repeats, a HIENet-V3-block-sized graph,
and whole models (the exported si-demo file, training gradients of a small model) on CUDA
against the CPU.
"""
import ase.build
import numpy as np
import pytest
import torch

from hienet import ops
from hienet.model import equivariant
from hienet.model.convolution import FusedConvolution, fused_runs_on

from conftest import make_model
from test_convolution_emulated import LAYOUTS, MASKS, graph, relative_error, v3_layout
from test_convolution_op import V3_SMALL, block

pytestmark = pytest.mark.skipif(not ops.available(), reason=f"no operator library: {ops.load_error()}")

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5}


# ---- which kernel a model uses (runs everywhere) ---------------------------------------------

def test_convolution_available_asks_the_dispatcher():
    assert torch.ops.hienet.convolution_available(CPU) and fused_runs_on(CPU) and ops.has_kernels("cpu")
    assert not torch.ops.hienet.convolution_available(torch.device("meta"))
    built = torch._C._dispatch_has_kernel_for_dispatch_key("hienet::convolution", "CUDA")
    assert torch.ops.hienet.convolution_available(CUDA) == fused_runs_on(CUDA) == ops.has_kernels("cuda") == built
    if built:    # a CUDA build: its kernels answer, a stand-in would replace them
        return
    stand_in = torch.library.Library("hienet", "IMPL")
    try:
        stand_in.impl("convolution", lambda *args: None, "CUDA")
        assert not torch.ops.hienet.convolution_available(CUDA)    # no backward yet
        stand_in.impl("convolution_backward", lambda *args: None, "CUDA")
        assert torch.ops.hienet.convolution_available(CUDA) and fused_runs_on(CUDA)
        assert torch.ops.hienet.convolution_available(torch.device("cuda", 1)) and ops.has_kernels("cuda")
    finally:
        stand_in._destroy()
    assert not torch.ops.hienet.convolution_available(CUDA) and not ops.has_kernels("cuda")


def small_model(seed=5):
    """A random model with every l = 0..3 path (as tests/test_fused_model.py)."""
    return make_model("small", seed=seed, species=["Si"], invariant_features=8, radial_mlp_hidden=[16],
                      hidden_irreps=["8x0e+4x1e+2x2e+2x3e", "8x0e+4x1e+2x2e+2x3e", "8x0e"])


def silicon(repeat=1, seed=0):
    atoms = ase.build.bulk("Si", cubic=True).repeat(repeat)
    atoms.rattle(0.1, seed=seed)
    return atoms


def evaluate_on(model, atoms, device, create_graph=False):
    from hienet.graph import graph_of_atoms
    from hienet.model.forces import evaluate

    graph = graph_of_atoms(atoms, model.cutoff)
    dtype = next(model.parameters()).dtype
    species = torch.zeros(len(atoms), dtype=torch.long, device=device)
    return evaluate(model, species, torch.as_tensor(graph.edge_index, device=device),
                    torch.as_tensor(graph.edge_vec, dtype=dtype, device=device), create_graph=create_graph)


def test_a_fused_model_asks_per_device_and_runs_e3nn_where_the_operator_has_none(monkeypatch):
    atoms = silicon()
    model = small_model()
    model.set_convolution("e3nn")
    reference = evaluate_on(model, atoms, CPU)
    model.set_convolution("fused")
    calls, asked = [], []
    radial = FusedConvolution.radial
    monkeypatch.setattr(FusedConvolution, "radial", lambda self, *a: calls.append(1) or radial(self, *a))
    for answer in (False, True):
        monkeypatch.setattr(equivariant, "fused_runs_on", lambda device: asked.append(device) or answer)
        calls.clear()
        out = evaluate_on(model, atoms, CPU)
        assert asked and set(asked) == {CPU}
        assert (len(calls) > 0) == answer    # the operator only where it has kernels
        for key in ("atom_energy", "forces", "virial"):
            assert relative_error(out[key], reference[key]) <= 1e-12, (answer, key)


# ---- on a GPU ---------------------------------------------------------------------------------

def require_cuda_kernels():
    assert ops.has_kernels("cuda"), (
        "libhienet_ops.so has no CUDA kernels: build against a CUDA torch with nvcc on PATH "
        "(CMake says 'hienet::convolution CUDA kernels: ...')")


def on(device, tensors):
    return [t.to(device) for t in tensors]


def compare(ours, ref, tol, what):
    assert ours.device.type == "cuda" and ours.shape == ref.shape, what
    assert relative_error(ours.cpu(), ref) <= tol, (what, relative_error(ours.cpu(), ref))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_cuda_operator_matches_the_cpu_operator(name, dtype):
    """Every layout of the emulated-kernel test, on a larger graph: 64 nodes, 1,500 edges, a
    centre with 100 edges (several tiles), a node without edges, unsorted edges."""
    require_cuda_kernels()
    layout = LAYOUTS[name]()
    cpu = graph(layout, dtype, seed=1, num_nodes=64, num_edges=1500, hub=100)
    x, sh, weight, edge_index, grad_out = on(CUDA, cpu)
    args = (layout.paths, layout.coefficients.to(dtype))
    tol = TOLERANCE[dtype]
    ref = torch.ops.hienet.convolution(*cpu[:4], *args, layout.out_dim)
    compare(torch.ops.hienet.convolution(x, sh, weight, edge_index, *args, layout.out_dim), ref, tol, "out")
    # the constants as a model loaded onto the GPU has them (torch.jit.load with map_location)
    on_gpu = on(CUDA, args)
    compare(torch.ops.hienet.convolution(x, sh, weight, edge_index, *on_gpu, layout.out_dim), ref, tol, "out, constants on the GPU")
    for mask in MASKS:
        refs = torch.ops.hienet.convolution_backward(cpu[4], *cpu[:4], *args, list(mask))
        ours = torch.ops.hienet.convolution_backward(grad_out, x, sh, weight, edge_index, *args, list(mask))
        for wanted, what, o, r in zip(mask, ("grad_x", "grad_sh", "grad_weight"), ours, refs):
            if wanted:
                compare(o, r, tol, (mask, what))
            else:
                assert o is None and r is None


@pytest.mark.cuda
def test_cuda_first_and_second_derivatives_match_the_cpu():
    """Through the autograd wrapper: convolution_radial's values, gradients and gradients of
    gradients (training on forces), and the plain convolution's."""
    require_cuda_kernels()
    b = block(V3_SMALL[1], V3_SMALL[2], False, False, torch.float64)
    x, sh, weight, edge_index, _ = graph(_Layout(b), torch.float64, seed=2, num_nodes=40, num_edges=600, hub=60)
    hidden = torch.randn(600, 16, dtype=torch.float64)
    linear = torch.randn(16, weight.shape[1], dtype=torch.float64)
    results = {}
    for device in (CPU, CUDA):
        inputs = [t.to(device).requires_grad_() for t in (x, sh, hidden, linear)]
        ei = edge_index.to(device)
        out = b.fused.radial(inputs[0], ei, inputs[1], inputs[2], inputs[3])
        first = torch.autograd.grad(out.pow(2).sum(), inputs, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in first), inputs)
        plain_inputs = [t.to(device).requires_grad_() for t in (x, sh, weight)]
        plain = b.fused(plain_inputs[0], ei, plain_inputs[1], plain_inputs[2])
        plain_first = torch.autograd.grad(plain.pow(2).sum(), plain_inputs, create_graph=True)
        plain_second = torch.autograd.grad(sum((g * g).sum() for g in plain_first), plain_inputs)
        results[device.type] = [out, *first, *second, plain, *plain_first, *plain_second]
    for k, (ours, ref) in enumerate(zip(results["cuda"], results["cpu"])):
        compare(ours.detach(), ref.detach(), 1e-12, k)


class _Layout:
    """Widths of an e3nn block, for graph()."""

    def __init__(self, b):
        tp = b.tensor_product
        self.x_dim, self.sh_dim = tp.irreps_in1.dim, tp.irreps_in2.dim
        self.weight_dim, self.out_dim = tp.weight_numel, b.fused.out_dim


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_cuda_v3_block_sized_graph_is_reproducible_bit_for_bit_and_matches_the_cpu(dtype):
    """HIENet-V3's widest block (512x0e+128x1e+64x2e+32x3e in and out), 512 nodes, 30 edges
    each: two runs give the same bits (no atomics), and the CPU operator's numbers."""
    require_cuda_kernels()
    layout = v3_layout(2, False)
    cpu = graph(layout, dtype, seed=3, num_nodes=512, num_edges=512 * 30, hub=120)
    x, sh, weight, edge_index, grad_out = on(CUDA, cpu)
    args = (layout.paths, layout.coefficients.to(dtype))
    runs = []
    for _ in range(2):
        out = torch.ops.hienet.convolution(x, sh, weight, edge_index, *args, layout.out_dim)
        grads = torch.ops.hienet.convolution_backward(grad_out, x, sh, weight, edge_index, *args, [True] * 3)
        runs.append([out, *grads])
    for first, second in zip(*runs):
        assert torch.equal(first, second)
    ref = torch.ops.hienet.convolution(*cpu[:4], *args, layout.out_dim)
    refs = torch.ops.hienet.convolution_backward(cpu[4], *cpu[:4], *args, [True] * 3)
    for what, ours, theirs in zip(("out", "grad_x", "grad_sh", "grad_weight"), runs[0], [ref, *refs]):
        compare(ours, theirs, TOLERANCE[dtype], what)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_exported_si_demo_runs_the_fused_kernel_on_cuda_like_the_cpu(tmp_path, dtype, tol):
    """The si-demo checkpoint exported now (files written before hienet::convolution_available
    run e3nn on a GPU), evaluated as the runtime does, on the GPU and on the CPU."""
    require_cuda_kernels()
    from hienet.checkpoint import load_model
    from hienet.deploy import DeployedModel
    from hienet.export import export_model
    from hienet.pretrained import bundled_model_path

    path = tmp_path / "si-demo.pt"
    meta = export_model(load_model(bundled_model_path("si-demo")), path, dtype=dtype, convolution="fused")
    assert "hienet::convolution_available" in meta["custom_ops"]
    atoms = silicon(repeat=2)
    cpu = DeployedModel(path, "cpu").evaluate(atoms)
    gpu_model = DeployedModel(path, "cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        gpu = gpu_model.evaluate(atoms)
    called = {event.name for event in profile.events()}
    assert "hienet::convolution" in called and "hienet::convolution_backward" in called, sorted(called)[:50]
    for key in ("energy", "energies", "forces", "stress"):
        ours, ref = np.asarray(gpu[key]), np.asarray(cpu[key])
        assert np.abs(ours - ref).max() <= tol * max(np.abs(ref).max(), 1.0), key


@pytest.mark.cuda
def test_cuda_training_gradients_match_the_cpu():
    """A force loss differentiates the forces: the operator's second derivatives, on the GPU."""
    require_cuda_kernels()
    from hienet.train.loss import WeightedHuberLoss

    atoms = silicon()
    grads = {}
    for device in (CPU, CUDA):
        model = small_model().to(device).train()
        model.set_convolution("fused")
        target = {"energy": torch.tensor([-100.0], dtype=torch.float64, device=device),
                  "forces": torch.zeros(len(atoms), 3, dtype=torch.float64, device=device),
                  "num_atoms": torch.tensor([len(atoms)], device=device),
                  "has_stress": torch.tensor([False], device=device)}
        loss, _ = WeightedHuberLoss(huber_delta=10.0)(evaluate_on(model, atoms, device, create_graph=True), target)
        loss.backward()
        grads[device.type] = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["cuda"].keys() == grads["cpu"].keys()
    assert any("radial_mlp" in n for n in grads["cuda"])    # reached through the operator
    for name, ref in grads["cpu"].items():
        assert relative_error(grads["cuda"][name], ref) <= 1e-10, name


@pytest.mark.cuda
def test_cuda_bad_input_is_the_cpu_operators_error():
    require_cuda_kernels()
    layout = v3_layout(1, False)
    x, sh, weight, edge_index, _ = graph(layout, torch.float32)
    args = (layout.paths, layout.coefficients.float(), layout.out_dim)
    gpu = on(CUDA, (x, sh, weight, edge_index))
    torch.ops.hienet.convolution(*gpu, *args)
    gpu[3][1, 7] = 6    # after a first call with the same tensor: checked again
    with pytest.raises(RuntimeError, match="edge 7 has node index 6, outside 0..5"):
        torch.ops.hienet.convolution(*gpu, *args)
    with pytest.raises(RuntimeError, match="one dtype"):
        torch.ops.hienet.convolution(gpu[0].double(), *gpu[1:3], edge_index.cuda(), *args)
    with pytest.raises(RuntimeError, match="the CUDA kernel got tensors on another device"):
        torch.ops.hienet.convolution(gpu[0], sh, gpu[2], edge_index.cuda(), *args)
