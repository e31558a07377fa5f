"""Keep each evaluation's tensors in malloc's heap, as the C++ runtime does.

The Python side of `cpp/include/hienet/allocator.h` (same rules, same words): glibc maps and
unmaps large blocks and trims its heap by default, so every step page-faults its memory in
again; `configure_allocator()` serves every block from the heap and never trims it. It uses
ctypes rather than `hienet._runtime`, so that importing hienet never loads the C++ runtime
(and with it the operator library) as a side effect. HIENET_MALLOC=system or the user's own
MALLOC_MMAP_THRESHOLD_ / MALLOC_MMAP_MAX_ / MALLOC_TRIM_THRESHOLD_ leave malloc alone.
"""
import ctypes
import os
import platform

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")

_done = None


def _apply() -> str:
    choice = os.environ.get("HIENET_MALLOC", "")
    if choice not in ("", "tuned", "system"):
        raise ValueError(f"HIENET_MALLOC must be 'tuned' or 'system', got {choice!r}")
    if choice == "system":
        return "malloc left alone (HIENET_MALLOC=system)"
    for name in _USER_SETTINGS:
        if os.environ.get(name):
            return f"malloc left alone ({name} is set)"
    if platform.libc_ver()[0] != "glibc":
        return "malloc left alone (not glibc)"
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1:
        return ("glibc malloc without mmap and trimming, each step reuses the last one's pages "
                "(HIENET_MALLOC=system: glibc defaults)")
    return "malloc left alone (mallopt refused the settings)"


def configure_allocator() -> str:
    """Apply the settings once per process; return what is in effect (ValueError for a bad
    HIENET_MALLOC)."""
    global _done
    if _done is None:
        _done = _apply()
    return _done
