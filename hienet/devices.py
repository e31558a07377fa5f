"""Torch devices from user options, checked up front so that a missing GPU is named as such
(and not reported later as a failure to load a model file)."""
from typing import Union

import torch


def resolve_device(name: Union[str, torch.device]) -> torch.device:
    """'auto' (CUDA if torch sees a GPU, else CPU), 'cpu', 'cuda' or 'cuda:N'.

    RuntimeError if CUDA is requested and torch sees no such device.
    """
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(name)!r} requested but there is no CUDA device: torch "
                               f"{torch.__version__} sees none (a CPU-only build, or no visible GPU)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise RuntimeError(f"device {str(name)!r} requested but torch sees {count} CUDA device(s)")
    return device
