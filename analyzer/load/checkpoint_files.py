"""What kind of file a checkpoint path is, from its first bytes (never from its name alone).

Every file that is not a readable checkpoint becomes a :class:`CheckpointError` with one
line saying what the file is and what was expected: missing, a directory, empty, truncated,
or another kind of file altogether (an image, text, an archive).
"""

from __future__ import annotations

import struct
from pathlib import Path
from torchaudit.errors import CheckpointError

EXPECTED = "expected a .safetensors file or a torch.save file (.pt, .pth, .bin, .ckpt)"
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")  # the files a directory stands for
_MAGICS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive (unpack it first)"),
    (b"BZh", "a bzip2 archive (unpack it first)"),
    (b"\xfd7zXZ", "an xz archive (unpack it first)"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF", "an HDF5 file (Keras/h5py)"),
    (b"GGUF", "a GGUF file (llama.cpp)"),
)
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


def sniff(path: Path) -> str:
    """``"safetensors"``, ``"zip"``, ``"tar"`` or ``"pickle"`` (a stream to scan); a missing,
    empty or directory path raises CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}", "check the path")
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        hint = f"pass one of the files inside it ({', '.join(inside[:3])})" if inside else EXPECTED
        raise CheckpointError(f"{path} is a directory, not a checkpoint file", hint)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint", EXPECTED)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"  # torch's own test (serialization.py _is_zipfile): the first four bytes
    if _looks_safetensors(head):
        return "safetensors"
    if _is_tar(path):
        return "tar"  # torch's _legacy_load tries a tar before a pickle stream
    # Anything else may be a pickle, whatever its first bytes (protocol 0 led by N0, FRAME without
    # PROTO, long protocol 1 prefixes): the opcode scan of the stream decides, and calls a file
    # whose first pickle breaks before importing anything no checkpoint (not_a_checkpoint).
    return "pickle"


def _is_tar(path: Path) -> bool:
    """Whether ``tarfile.open(mode="r:")`` reads a first header, as torch's ``legacy_load`` does."""
    import tarfile

    try:
        with tarfile.open(path, mode="r:"):
            return True
    except (tarfile.TarError, OSError, ValueError):
        return False


def not_a_checkpoint(path: Path, head: bytes | None = None) -> CheckpointError:
    """The error for a file that is no checkpoint: what it looks like instead."""
    if head is None:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    for magic, what in _MAGICS:
        if head.startswith(magic):
            return CheckpointError(f"{path} is {what}, not a checkpoint", EXPECTED)
    if path.name.endswith(".index.json"):
        return CheckpointError(
            f"{path} is the index of a sharded checkpoint, not a checkpoint", "pass one of the shard files it lists"
        )
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return CheckpointError(f"{path} is a text file, not a checkpoint", EXPECTED)
        except UnicodeDecodeError:
            pass
    return CheckpointError(f"{path} is not a recognized checkpoint format ({path.stat().st_size} bytes)", EXPECTED)


def _looks_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= _MAX_HEADER and head[8:9] == b"{"


def truncated(path: Path, kind: str, detail: str) -> CheckpointError:
    size = path.stat().st_size
    return CheckpointError(
        f"{path} is a truncated or damaged {kind} file ({size} bytes): {detail}", "copy or download the checkpoint again"
    )


_SUFFIXES = {".safetensors": ("safetensors",), **dict.fromkeys((".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle"), ("zip", "legacy", "pickle", "tar"))}
_FORMATS = {"safetensors": "a safetensors file", "zip": "a torch.save zip file", "legacy": "a legacy torch.save file",
            "pickle": "a raw pickle", "tar": "a pre-0.4 torch.save tar"}


def suffix_note(path: Path, fmt: str) -> str | None:
    """``"named .pt but is a safetensors file"`` when the file's suffix names another format than
    its content (``fmt``, as :func:`sniff` found it: the content decides how it is read); ``None``
    when they agree or the suffix names no checkpoint format."""
    expected = _SUFFIXES.get(path.suffix.lower())
    if expected is None or fmt in expected:
        return None
    return f"named {path.suffix} but is {_FORMATS.get(fmt, fmt)}"
