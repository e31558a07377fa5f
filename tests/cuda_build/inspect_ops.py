"""Inspect a libhienet_ops.so built with CUDA (tests/cuda_build/check.sh), without a GPU.

    python inspect_ops.py LIBRARY ARCH...     e.g. inspect_ops.py build/hienet/libhienet_ops.so 80 90

Checks, and exits non-zero naming what is missing:
  * the fat binary (ELF section .nv_fatbin) holds device code (SASS) for every ARCH,
  * the kernels are in the library (their host-side symbols: forward_kernel, backward_kernel),
  * loaded by this interpreter's torch (a CUDA build), the library registers
    hienet::convolution and hienet::convolution_backward for the CUDA dispatch key, and
    hienet::convolution_available says so.
"""
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
KINDS = {1: "PTX", 2: "SASS"}


def fatbin_entries(library: Path):
    """(kind, sm) of every entry in the library's .nv_fatbin section."""
    with tempfile.TemporaryDirectory() as tmp:
        section = Path(tmp) / "fatbin"
        subprocess.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", str(library),
                        str(section)], check=True)
        data = section.read_bytes()
    entries, offset = [], 0
    while offset + 16 <= len(data):
        magic, _, header, size = struct.unpack_from("<IHHQ", data, offset)
        if magic != FATBIN_MAGIC:    # padding between the fat binaries of two objects
            offset += 8
            continue
        entry, end = offset + header, offset + header + size
        while entry < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            (arch,) = struct.unpack_from("<I", data, entry + 28)
            entries.append((KINDS.get(kind, f"kind {kind}"), arch))
            entry += entry_header + payload
        offset = end
    return entries


def main(library: str, *archs: str) -> int:
    library = Path(library)
    problems = []
    entries = fatbin_entries(library)
    print(f"{library.name}: fat binary entries {sorted(set(entries))}")
    for arch in archs:
        if ("SASS", int(arch)) not in entries:
            problems.append(f"no device code for sm_{arch}")
    symbols = subprocess.run(["nm", "-C", str(library)], capture_output=True, text=True, check=True).stdout
    kernels = sorted({line.split(" ", 2)[-1] for line in symbols.splitlines()
                      if "forward_kernel<" in line or "backward_kernel<" in line})
    print(f"kernels: {len(kernels)}", *kernels[:8], sep="\n  ")
    for name in ("forward_kernel<float, 7>", "backward_kernel<double, 15>"):
        if not any(name in k for k in kernels):
            problems.append(f"kernel {name} missing")

    import torch

    torch.ops.load_library(str(library))
    for op in ("hienet::convolution", "hienet::convolution_backward"):
        registered = torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")
        print(f"{op} registered for CUDA: {registered}")
        if not registered:
            problems.append(f"{op} has no CUDA kernel")
    if not torch.ops.hienet.convolution_available(torch.device("cuda")):
        problems.append("hienet::convolution_available(cuda) is false")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU visible: {torch.cuda.is_available()}")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
