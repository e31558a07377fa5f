"""Writing files so that nothing written is ever lost: a new file is complete or absent.

`atomic_write(path)` yields a temporary path on the same file system (a file of the same name
in a hidden directory beside `path`, so that torch archives keep their usual inner name); when
the block succeeds the file is flushed to disk and renamed over `path` (os.replace, atomic on
POSIX), so a kill or an error while writing leaves the previous file untouched.
"""
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def check_writable_file(path, option: str = "output") -> Path:
    """`path` as a Path; IsADirectoryError naming `option` if it is an existing directory."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a directory; give a file name, e.g. {path / 'model.pt'}")
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path, option: str = "output") -> Iterator[Path]:
    """Yields a temporary file name next to `path`; `path` is replaced only on success."""
    path = check_writable_file(path, option)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp_dir.mkdir()
    tmp = tmp_dir / path.name
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_dir.rmdir()
    try:
        _fsync(path.parent)  # the rename itself survives a power loss
    except OSError:
        pass  # directories cannot be opened for fsync on every platform
