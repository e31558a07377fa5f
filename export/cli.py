"""`hienet-export`: write a deployable TorchScript file for LAMMPS and C++ codes."""
import argparse
import sys
from pathlib import Path

_EPILOG = """\
examples:
  hienet-export my_model.pth -o model.pt                    # our checkpoint, float64
  hienet-export HIENet-V3.pth -o hienet-v3.pt --dtype float32   # official checkpoint
  hienet-export si-demo -o si-demo.pt                       # a bundled model by name
  hienet-export m.pth -o m.pt --convolution e3nn            # without the custom operator

then in LAMMPS:  pair_style hienet model.pt
                 pair_coeff * * Si
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="hienet-export",
        description="Export a HIENet checkpoint (ours or an official HIENet one) to a "
        "self-contained TorchScript file with metadata, for `pair_style hienet` and hienet.deploy.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="checkpoint file (.pth), official HIENet checkpoint, or bundled model name")
    parser.add_argument("-o", "--output", required=True, help="output file, e.g. model.pt")
    parser.add_argument(
        "--dtype", choices=["float32", "float64"], default="float64",
        help="precision of the exported model (default float64; float32 is faster on GPUs)",
    )
    parser.add_argument(
        "--convolution", "--kernel", choices=["fused", "e3nn"], default="fused",
        help="kernel of the equivariant convolution (default fused: the hienet::convolution "
        "operator, same numbers as e3nn, several times faster and lighter; the file then needs "
        "libhienet_ops.so, which hienet's Python package, C++ runtime and LAMMPS plugin load)",
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu",
        help="device the model is scripted on (the file loads on either; default cpu)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from hienet.calculator import resolve_model_path
    from hienet.checkpoint import EXPORTED, _require_file, file_kind, load_model
    from hienet.files import check_writable_file

    from .exporter import export_model

    try:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but no CUDA device is available")
        check_writable_file(args.output, "-o")
        source = resolve_model_path(args.checkpoint)
        if file_kind(_require_file(source)) == EXPORTED:
            raise ValueError(f"{source} is already an exported model (written by hienet-export); "
                             "export takes checkpoints (.pth): ours, official HIENet ones or a bundled name")
        model = load_model(source, dtype=torch.float64)
        n_params = sum(p.numel() for p in model.parameters())
        try:
            meta = export_model(model, args.output, dtype=args.dtype, device=args.device,
                                convolution=args.convolution)
        except ValueError as err:  # e.g. non-finite weights: name the checkpoint
            raise ValueError(f"{source}: {err}") from None
    except (OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as err:
        print(f"hienet-export: error: {err}", file=sys.stderr)
        return 1
    size = Path(args.output).stat().st_size
    layers = meta["num_message_passing_layers"]
    print(f"exported {source} -> {args.output}")
    print(f"  parameters        {n_params:,}")
    print(f"  species           {len(meta['species'])}: {' '.join(meta['species'])}")
    print(f"  cutoff            {meta['cutoff']:g} Å")
    print(f"  message passing   {layers} layers (receptive field {layers * meta['cutoff']:g} Å)")
    print(f"  dtype             {meta['dtype']}")
    print(f"  convolution       {meta['convolution']}")
    print(f"  smooth at cutoff  {meta['config']['smooth_invariant']}")
    print(f"  hash              {meta['model_hash']}")
    print(f"  file size         {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
