"""Write zip archives byte by byte, including the ones ``zipfile`` refuses to write: duplicate
names, NUL bytes in names, local headers naming another file, wrong CRCs, deflated records,
data before the archive. Each member is ``Entry``; ``write_zip`` lays them out as a zip64-free
archive the way ``torch.save`` does (local headers, data, central directory, end record)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Entry:
    name: bytes
    data: bytes
    deflate: bool = False
    local_name: bytes | None = None  # another name in the local header
    crc: int | None = None  # a wrong CRC
    flags: int = 0
    method: int | None = None  # another compression method number


def torch_members(path: Path) -> list[Entry]:
    """The members of a real ``torch.save`` zip, as entries to rearrange."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return [Entry(i.filename.encode(), zf.read(i.filename)) for i in zf.infolist()]


def write_zip(path: Path, entries: list[Entry], prefix: bytes = b"", shift: int = 0, gap: bytes = b"") -> None:
    """``prefix``: bytes before the archive, with offsets written as if they were not there
    when ``shift`` is ``-len(prefix)`` (what ``zipfile`` corrects and miniz does not);
    ``gap``: bytes between the central directory and the end record."""
    body = bytearray(prefix)
    central = bytearray()
    for e in entries:
        payload = zlib.compress(e.data)[2:-4] if e.deflate else e.data
        method = e.method if e.method is not None else (8 if e.deflate else 0)
        crc = e.crc if e.crc is not None else zlib.crc32(e.data)
        local_name = e.local_name if e.local_name is not None else e.name
        offset = len(body) + shift
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, e.flags, method, 0, 0, crc, len(payload), len(e.data),
                            len(local_name), 0) + local_name + payload
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, e.flags, method, 0, 0, crc, len(payload),
                               len(e.data), len(e.name), 0, 0, 0, 0, 0, offset) + e.name
    cd_offset = len(body) + shift
    body += central + gap
    body += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_offset, 0)
    path.write_bytes(bytes(body))
