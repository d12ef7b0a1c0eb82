"""A ``save_pretrained`` directory as a TARGET: ``config.json`` names the model, the weights
beside it are its checkpoint.

The class is ``config.architectures[0]`` from the installed transformers (else the
``AutoModel`` class of its ``model_type``), built from the config alone, as
``AutoModel.from_config`` builds it (``_from_config``: random weights under torchaudit's seed),
and put in eval mode as ``from_pretrained`` leaves it. Nothing is downloaded
(``local_files_only``) and no code from the directory runs (no ``trust_remote_code``). The
weights are not loaded here: the pipeline reads them as the target's checkpoint, through
torchaudit's own safe loader (:func:`torchaudit.analyzer.load.checkpoint.load_checkpoint`),
never through ``from_pretrained``'s ``torch.load``.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, ContextManager

import torch.nn as nn

from torchaudit.errors import TargetError

if TYPE_CHECKING:
    from torchaudit.analyzer.load.target import LoadedTarget

CONFIG = "config.json"
_FIX = "pass a save_pretrained directory (config.json and its weights) or path/to/model.py"


def is_transformers_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


def read_config(folder: Path) -> Any:  # a transformers PretrainedConfig
    try:
        from transformers import AutoConfig
    except ImportError:
        raise TargetError(f"{folder} is a transformers directory and transformers is not installed", "pip install transformers") from None
    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        text = " ".join(str(exc).split())
        raise TargetError(f"{folder / CONFIG} is not a config this transformers can read: {text[:200]}", _FIX) from None


def model_class(config: Any, folder: Path) -> type[nn.Module]:
    """``config.architectures[0]`` from transformers, else the AutoModel class of its model_type."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    archs = getattr(config, "architectures", None) or []
    found = archs[0] if archs else MODEL_MAPPING_NAMES.get(getattr(config, "model_type", ""), "")
    name = found if isinstance(found, str) else ""  # a model_type mapped to several classes names none
    cls = getattr(transformers, name, None) if name else None
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        what = f"architecture {name!r}" if archs else f"model_type {getattr(config, 'model_type', None)!r}"
        raise TargetError(
            f"{folder / CONFIG} names {what}, which transformers {transformers.__version__} does not have",
            "install a transformers that has it; torchaudit never runs code from the model's directory",
        )
    return cls


def load_transformers_dir(spec: str, build_context: Callable[[], ContextManager[object]] | None = None) -> LoadedTarget:
    """The :class:`~torchaudit.analyzer.load.target.LoadedTarget` of a ``save_pretrained`` directory."""
    from torchaudit.analyzer.load.sharded import weights_in
    from torchaudit.analyzer.load.target import LoadedTarget

    folder = Path(spec)
    if not (folder / CONFIG).is_file():
        raise TargetError(f"{folder} is a directory without {CONFIG}, not a model", _FIX)
    weights = weights_in(folder)  # no weights: exit 2 before transformers is imported
    config = read_config(folder)
    cls = model_class(config, folder)

    def factory() -> nn.Module:
        with build_context() if build_context is not None else nullcontext():
            try:
                model = cls._from_config(config)  # type: ignore[attr-defined]  # every PreTrainedModel has it
            except Exception as exc:  # noqa: BLE001 - transformers' constructor on the user's config
                text = " ".join(str(exc).split())
                raise TargetError(f"building {cls.__name__} from {folder / CONFIG} failed: {type(exc).__name__}: {text[:200]}", _FIX) from None
        return model.eval()

    module = ModuleType(f"torchaudit_transformers_dir_{cls.__name__}")  # no __file__: no user source to read
    setattr(module, cls.__name__, factory)
    return LoadedTarget(
        spec=spec, model=factory(), module=module, name=cls.__name__, factory=factory, file=None, weights=weights,
    )


# config.json keys that say how or by whom a file was written, not what the model computes;
# dtype is left out as well: the tensor table shows a change of dtype tensor by tensor
_BOOKKEEPING = frozenset({
    "_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype", "use_cache",
    "_commit_hash", "_attn_implementation_autoset", "output_attentions", "output_hidden_states", "return_dict",
})


def config_folder(checkpoint: Path) -> Path | None:
    """The folder whose ``config.json`` describes a checkpoint (a directory, or an index or file
    beside a ``config.json``), or ``None``."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return folder if (folder / CONFIG).is_file() else None


def same_model(folder_a: Path, folder_b: Path) -> tuple[str, ...]:
    """Check that B's ``config.json`` describes the model A's does (``diff DIR_A DIR_B`` builds
    one model, from A's config, and loads each side into it).

    Another class, or a config that gives the state dict other keys or shapes (both built on
    the meta device: no weight memory), is :class:`TargetError`. Other differences (``rope_theta``,
    ``hidden_act``, a dropout rate) come back as notes: the model with B loaded runs with A's values."""
    config_a, config_b = read_config(folder_a), read_config(folder_b)
    cls_a, cls_b = model_class(config_a, folder_a), model_class(config_b, folder_b)
    fix = "pass TARGET A B to diff both files against one model"
    if cls_a is not cls_b:
        raise TargetError(f"{folder_b / CONFIG} names {cls_b.__name__}, {folder_a / CONFIG} {cls_a.__name__}: not two checkpoints of one model", fix)
    da, db = config_a.to_dict(), config_b.to_dict()
    differing = sorted(k for k in da.keys() | db.keys() if k not in _BOOKKEEPING and da.get(k) != db.get(k))
    if not differing:
        return ()
    shown = "; ".join(f"{k} {da.get(k)!r} -> {db.get(k)!r}" for k in differing[:4]) + (f" and {len(differing) - 4} more" if len(differing) > 4 else "")
    if _shapes(cls_a, config_a, folder_a) != _shapes(cls_b, config_b, folder_b):
        raise TargetError(f"{folder_b / CONFIG} describes a {cls_a.__name__} of other shapes than {folder_a / CONFIG} ({shown})", fix)
    return (f"B's {CONFIG} differs from A's ({shown}); both checkpoints ran in the model built from A's",)


def _shapes(cls: type[nn.Module], config: Any, folder: Path) -> dict[str, tuple[int, ...]]:
    """The state dict's keys and shapes of ``cls`` built from ``config`` on the meta device."""
    import torch

    try:
        with torch.device("meta"):
            model = cls._from_config(config)  # type: ignore[attr-defined]  # every PreTrainedModel has it
    except Exception as exc:  # noqa: BLE001 - transformers' constructor on the user's config
        text = " ".join(str(exc).split())
        raise TargetError(f"building {cls.__name__} from {folder / CONFIG} failed: {type(exc).__name__}: {text[:200]}", _FIX) from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
