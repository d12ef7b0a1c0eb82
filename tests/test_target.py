"""Target loading: the three TARGET forms, discovery, and model files that import siblings."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch.nn as nn

from tests.conftest import FIXTURES
from torchaudit.analyzer.load.target import load_target
from torchaudit.errors import TargetError

MODELS = FIXTURES / "models"


def test_bare_file_with_one_buildable_class_picks_it():
    t = load_target(str(MODELS / "one_buildable.py"))
    assert type(t.model).__name__ == "Model"  # Layer needs a width: not a candidate
    assert t.name == "Model"
    assert t.file == (MODELS / "one_buildable.py").resolve()


def test_factory_wins_over_classes():
    t = load_target(str(MODELS / "factory_wins.py"))
    assert t.name == "get_model"
    assert type(t.model).__name__ == "B"
    fresh = t.factory()
    assert type(fresh).__name__ == "B" and fresh is not t.model


def test_file_colon_name_picks_a_class_among_several():
    t = load_target(f"{MODELS / 'several.py'}:Decoder")
    assert type(t.model).__name__ == "Decoder"


def test_file_colon_name_picks_a_factory():
    t = load_target(f"{MODELS / 'nested.py'}:build_model")
    assert type(t.model).__name__ == "Net"


def test_several_candidates_are_listed_with_the_name_form():
    with pytest.raises(TargetError) as err:
        load_target(str(MODELS / "several.py"))
    text = err.value.one_line()
    assert "Decoder" in text and "Encoder" in text
    assert "NeedsArgs" not in text  # needs arguments: not a candidate
    assert "several.py:Decoder" in text  # the model.py:NAME form to pick one


def test_unknown_name_lists_candidates():
    with pytest.raises(TargetError) as err:
        load_target(f"{MODELS / 'several.py'}:Nope")
    assert "Nope" in err.value.message and "Encoder" in err.value.fix


def test_package_module_name_form(monkeypatch):
    monkeypatch.chdir(MODELS)  # package.module:NAME resolves from the working folder
    t = load_target("pkg_models.zoo:build_zoo")
    assert type(t.model).__name__ == "ZooNet"
    assert t.file is None
    names = [p.name for p in t.source_files]
    assert names[0] == "zoo.py" and "parts.py" in names


def test_package_form_from_a_package_in_tmp_path(tmp_path, monkeypatch):
    pkg = tmp_path / "mymodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "vision.py").write_text(
        "import torch.nn as nn\n\nclass Tiny(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    t = load_target("mymodels.vision:Tiny")
    assert isinstance(t.model, nn.Module) and type(t.model).__name__ == "Tiny"
    sys.modules.pop("mymodels.vision", None)
    sys.modules.pop("mymodels", None)


def test_package_form_without_name_is_an_error():
    with pytest.raises(TargetError) as err:
        load_target("some.dotted.module")
    assert "package.module:NAME" in err.value.one_line()


def test_model_file_imports_its_sibling(tmp_path):
    # a copy in a fresh folder: the sibling is found next to the file, not through sys.path
    folder = tmp_path / "proj"
    folder.mkdir()
    shutil.copy(MODELS / "with_sibling.py", folder / "train_model.py")
    shutil.copy(MODELS / "ta_fixture_layers.py", folder / "ta_fixture_layers.py")
    sys.modules.pop("ta_fixture_layers", None)
    t = load_target(str(folder / "train_model.py"))
    assert type(t.model).__name__ == "UsesSibling"
    assert [p.name for p in t.source_files] == ["train_model.py", "ta_fixture_layers.py"]
    sys.modules.pop("ta_fixture_layers", None)


def test_source_files_leave_out_unrelated_modules_of_the_folder(tmp_path):
    folder = tmp_path / "proj2"
    folder.mkdir()
    (folder / "unrelated_ta_mod.py").write_text("X = 1\n")
    (folder / "m.py").write_text(
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n"
    )
    sys.path.insert(0, str(folder))
    try:
        import unrelated_ta_mod  # noqa: F401 - imported by someone else, not by the target

        t = load_target(str(folder / "m.py"))
        assert [p.name for p in t.source_files] == ["m.py"]
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("unrelated_ta_mod", None)


def test_a_model_file_named_like_an_installed_package_does_not_shadow_it(tmp_path):
    (tmp_path / "networkx.py").write_text(
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n"
    )
    import networkx

    t = load_target(str(tmp_path / "networkx.py"))
    assert type(t.model).__name__ == "M"
    assert sys.modules["networkx"] is networkx


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("no_such_file.py", "not found"),
        ("no_model.py", "no nn.Module"),
        ("factory_raises.py", "weights directory is missing"),
        ("factory_not_module.py", "returned a dict, not an nn.Module"),
    ],
)
def test_target_errors(spec, expected):
    with pytest.raises(TargetError) as err:
        load_target(str(MODELS / spec))
    assert expected in err.value.message
    assert err.value.fix


def test_a_module_instance_is_not_a_target(tmp_path):
    (tmp_path / "inst.py").write_text("import torch.nn as nn\nmodel = nn.Linear(2, 2)\n")
    with pytest.raises(TargetError) as err:
        load_target(f"{tmp_path / 'inst.py'}:model")
    assert "instance" in err.value.message


def test_classes_imported_from_siblings_are_not_candidates(tmp_path):
    (tmp_path / "ta_blocks_sib.py").write_text(
        "import torch.nn as nn\n\nclass Block(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n"
    )
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\nfrom ta_blocks_sib import Block\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.block = Block()\n"
    )
    try:
        t = load_target(str(tmp_path / "net.py"))
        assert type(t.model).__name__ == "Net"
        assert [p.name for p in t.source_files] == ["net.py", "ta_blocks_sib.py"]
    finally:
        sys.modules.pop("ta_blocks_sib", None)


def test_a_model_file_named_like_a_not_yet_imported_package_does_not_shadow_it(tmp_path):
    (tmp_path / "jinja2.py").write_text(
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n"
    )
    saved = {k: v for k, v in sys.modules.items() if k == "jinja2" or k.startswith("jinja2.")}
    for k in saved:
        del sys.modules[k]
    try:
        t = load_target(str(tmp_path / "jinja2.py"))
        assert type(t.model).__module__ != "jinja2"
        assert "jinja2" not in sys.modules
        # after the import the model's folder no longer comes first: the real package is what
        # the rest of the process (the HTML report, transformers) imports as jinja2
        import importlib.util

        origin = importlib.util.find_spec("jinja2").origin
        assert origin is not None and not origin.startswith(str(tmp_path))
        assert str(tmp_path.resolve()) in sys.path  # siblings stay importable
    finally:
        sys.modules.update(saved)
