"""The battery's own checks, without a scanner: the builders are registered with a loader and
say what they attack, the zip differentials really show Python's ``zipfile`` another pickle
(or none) than the one torch runs, and the probes stay under 10 MB and run nothing.
(That each builder's payload really runs is ``test_payloads_are_real``.)"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

import pytest

from tests import battery_zip, malicious, probes


def test_every_builder_has_a_loader_and_a_docstring() -> None:
    assert len(malicious.BUILDERS) >= 40
    assert set(malicious.LOADERS) == set(malicious.BUILDERS)
    assert set(malicious.LOADERS.values()) == {"pickle", "torch"}
    for name, build in malicious.BUILDERS.items():
        assert build.__doc__ and len(build.__doc__.split()) >= 8, f"{name} does not say what it attacks"


_ZIPFILE_VIEW = sorted(set(battery_zip.REGISTRY.builders) - {"pickle_zip_polyglot", "zip_deflated_data_pkl"})


@pytest.mark.parametrize("kind", _ZIPFILE_VIEW)
def test_zipfile_does_not_show_the_pickle_torch_runs(kind: str, tmp_path: Path) -> None:
    """Read with Python's zipfile, ``archive/data.pkl`` is missing, unreadable, or the benign
    decoy: a scanner built on zipfile alone misses each of these."""
    evil = tmp_path / "evil.pt"
    battery_zip.REGISTRY.builders[kind](evil, tmp_path / "canary")
    try:
        with zipfile.ZipFile(evil) as z:
            data = z.read("archive/data.pkl")
    except (KeyError, zipfile.BadZipFile):
        return
    if kind == "zip_nullifai_broken_data_pkl":  # readable, but not to its end
        with pytest.raises(ValueError, match="unknown"):
            list(pickletools.genops(data))
        return
    assert b"system" not in data, f"{kind}: zipfile reads the malicious data.pkl"
    assert not (tmp_path / "canary").exists()


def test_the_polyglot_is_a_zip_to_zipfile_and_a_pickle_to_torch(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    battery_zip.pickle_zip_polyglot(evil, tmp_path / "canary")
    assert zipfile.is_zipfile(evil) and evil.read_bytes()[:2] == b"\x80\x04"  # torch: not PK\x03\x04
    with zipfile.ZipFile(evil) as z:
        assert b"system" not in z.read("archive/data.pkl")


@pytest.mark.slow  # the two zip bombs deflate 1 GiB each (about a second)
@pytest.mark.parametrize("name", sorted(probes.PROBES))
def test_probes_are_under_10_mb_and_run_nothing(name: str, tmp_path: Path) -> None:
    make, suffix = probes.PROBES[name]
    path = tmp_path / f"probe{suffix}"
    make(path)
    assert 0 < path.stat().st_size < 10 * 2**20
    assert probes.EXPECT[name] and probes.PROBES[name][0].__doc__
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # wrote that file only
