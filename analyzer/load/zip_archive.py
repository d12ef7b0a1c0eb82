"""Read a zip archive the way torch's reader does, and say where other readers see another file.

``torch.load`` reads ``torch.save`` zips with miniz (``caffe2/serialize/inline_container.cc``,
``PyTorchStreamReader``), Python scanners read them with :mod:`zipfile`, and the two disagree
on crafted archives: miniz compares names by their full length (a NUL is an ordinary byte) and
looks records up case-insensitively (``mz_zip_reader_locate_file`` without
``MZ_ZIP_FLAG_CASE_SENSITIVE``), while ``zipfile`` cuts names at a NUL, matches them
case-sensitively, returns the *last* of two equal names, shifts every offset when data sits
before the archive, and refuses a member whose local header names another file or whose
CRC is wrong. A scanner built on ``zipfile`` can therefore read one ``data.pkl`` while torch
unpickles another.

So this module parses the central directory itself (byte names, zip64 included), reads every
member from its local header exactly as miniz does (offsets as written, sizes and method
from the central directory, no CRC check), and lists every way the archive is ambiguous in
:attr:`ZipArchive.problems`. ``zipfile`` is not used: it raises on the very archives that
matter (names that are not UTF-8, flag bits it does not support) before it shows a member.
Members are read as bounded streams: memory never exceeds a buffer, whatever a header claims.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from torchaudit.errors import CheckpointError

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_LOCATOR64 = b"PK\x06\x07"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_MAX_COMMENT = 0xFFFF
STORED, DEFLATED = 0, 8
_CHUNK = 1 << 16

# A compressed member that inflates past both limits is refused (a compression bomb):
# torch.save never compresses, so only a crafted or re-zipped file gets near them.
BOMB_SIZE = 16 << 20
BOMB_RATIO = 20


@dataclass(frozen=True)
class Member:
    """One central-directory entry, with what its local header says."""

    raw_name: bytes
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    local_name: bytes | None = None  # None when the local header could not be read
    data_offset: int = -1

    @property
    def name(self) -> str:
        """The name for messages: UTF-8 where it is, escaped where it is not."""
        return self.raw_name.decode("utf-8", "backslashreplace")

    @property
    def is_pickle(self) -> bool:
        """Named like a pickle torch could unpickle: ``*.pkl`` in any case, also when a NUL
        cuts the name as ``zipfile`` reads it."""
        name = self.raw_name.lower()
        return name.endswith(b".pkl") or name.split(b"\0", 1)[0].endswith(b".pkl")

    @property
    def inflates_like_a_bomb(self) -> bool:
        return self.method != STORED and self.size > BOMB_SIZE and self.size > BOMB_RATIO * max(self.compressed_size, 1)


@dataclass
class ZipArchive:
    """The members of a zip file as torch's reader sees them, and what makes it ambiguous."""

    path: Path
    members: list[Member]
    problems: list[str] = field(default_factory=list)  # each: how readers disagree about the file

    @property
    def prefix(self) -> str:
        """torch's archive name: the folder of the first entry (``PyTorchStreamReader::init``)."""
        first = self.members[0].raw_name if self.members else b""
        return first.split(b"/", 1)[0].decode("utf-8", "backslashreplace") if b"/" in first else ""

    @property
    def compressed(self) -> list[Member]:
        return [m for m in self.members if m.method != STORED]

    def open(self, member: Member) -> IO[bytes]:
        """A bounded stream of the member's bytes as miniz would inflate them."""
        if member.data_offset < 0:
            raise CheckpointError(
                f"{self.path}: the local header of {member.name} is missing or damaged", "copy or download the checkpoint again"
            )
        raw: io.RawIOBase
        if member.method == STORED:
            raw = _Window(self.path, member.data_offset, member.compressed_size)
        elif member.method == DEFLATED:
            raw = _Inflating(self.path, member.data_offset, member.compressed_size, member.size)
        else:
            raise CheckpointError(
                f"{self.path}: {member.name} is compressed with method {member.method}, which torch's zip reader does not read",
                "save the checkpoint again with torch.save",
            )
        return io.BufferedReader(raw, _CHUNK)

    def crc_ok(self, member: Member) -> bool:
        crc = 0
        with self.open(member) as fh:
            while chunk := fh.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
        return crc == member.crc


def read_zip(path: Path) -> ZipArchive:
    """Parse ``path``'s central directory and local headers; raise :class:`CheckpointError`
    with one line when it is no readable zip."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        tail_start = max(0, size - (22 + _MAX_COMMENT + 20 + 56))
        fh.seek(tail_start)
        tail = fh.read()
        at = tail.rfind(_EOCD)  # the last signature, as miniz's backward search and zipfile's rfind find it
        if at < 0 or len(tail) - at < 22:
            raise _damaged(path, "its end-of-archive record is missing")
        eocd_pos = tail_start + at
        _, _, _, count, cd_size, cd_offset, _ = struct.unpack("<HHHHIIH", tail[at + 4 : at + 22])
        problems: list[str] = []
        fh.seek(max(0, eocd_pos - 20))
        if fh.read(4) == _LOCATOR64:  # zip64 end records (torch writes them always) sit between
            count64, size64, offset64, eocd_pos = _zip64_end(path, fh, eocd_pos)  # the directory and the end
            if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
                count, cd_size, cd_offset = count64, size64, offset64
        elif count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
            raise _damaged(path, "its zip64 end-of-archive locator is missing")
        if cd_offset + cd_size != eocd_pos:
            # zipfile shifts every offset by the difference ("data before the archive"); miniz does not
            problems.append(
                f"its central directory is at byte {eocd_pos - cd_size} but the archive says {cd_offset}: "
                "readers that correct the offsets read other bytes than torch"
            )
        if cd_offset + cd_size > size:
            raise _damaged(path, f"its central directory ends at byte {cd_offset + cd_size}, the file has {size}")
        fh.seek(cd_offset)
        directory = fh.read(cd_size)
        members = [_with_local_header(fh, m, size) for m in _central_entries(path, directory, count)]
    archive = ZipArchive(path, members, problems)
    problems.extend(_ambiguities(archive))
    return archive


def _zip64_end(path: Path, fh: IO[bytes], eocd_pos: int) -> tuple[int, int, int, int]:
    fh.seek(max(0, eocd_pos - 20))
    locator = fh.read(20)
    if len(locator) < 20 or locator[:4] != _LOCATOR64:
        raise _damaged(path, "its zip64 end-of-archive locator is missing")
    (end64,) = struct.unpack("<Q", locator[8:16])
    fh.seek(end64)
    record = fh.read(56)
    if len(record) < 56 or record[:4] != _EOCD64:
        raise _damaged(path, "its zip64 end-of-archive record is missing")
    count, cd_size, cd_offset = struct.unpack("<QQQ", record[32:56])
    return count, cd_size, cd_offset, end64


def _central_entries(path: Path, directory: bytes, count: int) -> list[Member]:
    out: list[Member] = []
    pos = 0
    while pos < len(directory):
        if directory[pos : pos + 4] != _CENTRAL or pos + 46 > len(directory):
            raise _damaged(path, f"its central directory breaks after {len(out)} of {count} entries")
        (flags, method, _time, _date, crc, csize, usize, n, m, k, _disk, _iattr, _eattr, offset) = struct.unpack(
            "<HHHHIIIHHHHHII", directory[pos + 8 : pos + 46]
        )
        name = directory[pos + 46 : pos + 46 + n]
        extra = directory[pos + 46 + n : pos + 46 + n + m]
        usize, csize, offset = _zip64_sizes(extra, usize, csize, offset)
        out.append(Member(name, flags, method, crc, csize, usize, offset))
        pos += 46 + n + m + k
    if len(out) != count:
        raise _damaged(path, f"its central directory holds {len(out)} entries, the archive says {count}")
    return out


def _zip64_sizes(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """The 64-bit sizes and offset of the zip64 extra field (id 1), for the fields saturated
    at 0xFFFFFFFF, in the order APPNOTE 4.5.3 gives."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos : pos + 4])
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 1:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        pos += 4 + length
    return usize, csize, offset


def _with_local_header(fh: IO[bytes], member: Member, size: int) -> Member:
    fh.seek(member.header_offset)
    head = fh.read(30)
    if len(head) < 30 or head[:4] != _LOCAL:
        return member
    n, m = struct.unpack("<HH", head[26:30])
    local_name = fh.read(n)
    data_offset = member.header_offset + 30 + n + m
    if data_offset + member.compressed_size > size:
        return dataclasses.replace(member, local_name=local_name)
    return dataclasses.replace(member, local_name=local_name, data_offset=data_offset)


def _ambiguities(archive: ZipArchive) -> list[str]:
    """Ways two zip readers can see different files in this archive."""
    problems = []
    seen: dict[bytes, Member] = {}
    for m in archive.members:
        folded = m.raw_name.lower()
        if b"\0" in m.raw_name:
            cut = m.raw_name.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
            problems.append(f"member {m.name!r} has a NUL in its name: zipfile reads it as {cut!r}, torch does not")
        if folded in seen:
            other = seen[folded]
            same = "twice" if other.raw_name == m.raw_name else f"also as {other.name!r}"
            problems.append(
                f"member {m.name!r} is named {same}: torch's reader looks names up case-insensitively "
                "and zipfile takes the last, so they can read different members"
            )
        seen.setdefault(folded, m)
        if m.local_name is not None and m.local_name != m.raw_name:
            local = m.local_name.decode("utf-8", "backslashreplace")
            problems.append(f"member {m.name!r} is called {local!r} in its local header: readers disagree which name it has")
        if m.local_name is None:
            problems.append(f"member {m.name!r} has no local header where the directory points")
    return problems


def _damaged(path: Path, detail: str) -> CheckpointError:
    size = path.stat().st_size
    return CheckpointError(
        f"{path} is a truncated or damaged zip (torch.save) file ({size} bytes): {detail}",
        "copy or download the checkpoint again",
    )


class _Window(io.RawIOBase):
    """``length`` bytes of a file from ``start``, read on demand."""

    def __init__(self, path: Path, start: int, length: int) -> None:
        self._fh = open(path, "rb")
        self._fh.seek(start)
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._fh.readinto(memoryview(buffer)[: min(len(buffer), self._left)])
        self._left -= n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


class _Inflating(io.RawIOBase):
    """A raw-deflate member, inflated chunk by chunk and never past its declared size (miniz
    stops there too)."""

    def __init__(self, path: Path, start: int, compressed: int, size: int) -> None:
        self._source = _Window(path, start, compressed)
        self._inflate = zlib.decompressobj(-15)
        self._left = size
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._left)
        while want and not self._pending:
            tail = self._inflate.unconsumed_tail
            data = tail if tail else self._source.read(_CHUNK)
            if not data:
                break
            try:
                self._pending = self._inflate.decompress(data, want)
            except zlib.error as exc:
                raise OSError(f"its deflate stream is damaged ({exc})") from None
            if not self._pending and self._inflate.eof:
                break
        n = min(want, len(self._pending))
        memoryview(buffer)[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._left -= n
        return n

    def close(self) -> None:
        self._source.close()
        super().close()
