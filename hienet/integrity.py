"""The archive digest of an exported model file (metadata key `archive_digest`, FORMAT.md).

A frozen TorchScript file holds no state dict, so the C++ runtime cannot recompute
`model_hash` (config + float64 weights). Instead `hienet-export` stores a digest of the
archive's records (code, constants, weights: everything except the metadata itself and
torch's random `.data/serialization_id`), and every loader recomputes it:

    SHA-1 over, for each record in byte-wise order of its name (relative to the archive's top
    directory):  name, NUL, decimal byte count, NUL, CRC-32 of its bytes (8 hex digits), LF.

The bytes are checked through their CRC-32 (zlib's polynomial), which is ~20x faster than
SHA-1 over the bytes and as good at detecting damage and edits; the C++ runtime uses LibTorch's
own CRC-32 and SHA-1 (`caffe2/serialize/crc_alt.h`, `c10/util/hash.h`), so it needs no new
library. It is not a signature: whoever can edit the file can also rewrite the metadata.
"""
import hashlib
import io
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Tuple, Union

DIGEST_KEY = "archive_digest"
PREFIX = "sha1:"
# not covered: the metadata (it holds the digest) and a random id torch writes on every save
EXCLUDED = ("extra/metadata.json", ".data/serialization_id")


def _records(archive: zipfile.ZipFile) -> Iterable[Tuple[bytes, zipfile.ZipInfo]]:
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = info.filename.split("/", 1)[-1]
        if name not in EXCLUDED:
            yield name.encode(), info


def archive_digest(source: Union[str, Path, bytes, io.BufferedIOBase]) -> str:
    """`sha1:<hex>` of a TorchScript archive (a path, its bytes or a binary file object)."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    h = hashlib.sha1()
    with zipfile.ZipFile(source) as archive:
        for name, info in sorted(_records(archive), key=lambda r: r[0]):
            crc = 0
            with archive.open(info) as f:
                while chunk := f.read(1 << 20):
                    crc = zlib.crc32(chunk, crc)
            h.update(b"%s\0%d\0%08x\n" % (name, info.file_size, crc))
    return PREFIX + h.hexdigest()


def verify_archive(path, metadata: dict) -> None:
    """ValueError naming `path` if its records do not match the digest stored at export."""
    stored = metadata.get(DIGEST_KEY)
    if not isinstance(stored, str) or not stored.startswith(PREFIX):
        raise ValueError(f"{path}: metadata has no valid {DIGEST_KEY!r}; re-export it with hienet-export")
    try:
        actual = archive_digest(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path} cannot be read to check its integrity ({err}): it was damaged "
                         "after export; re-export it") from None
    if actual != stored:
        raise ValueError(f"{path} was modified or damaged after export (archive digest {actual}, "
                         f"metadata says {stored}); re-export it with hienet-export")
