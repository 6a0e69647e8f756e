"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A reader (or a resumed sweep after ``kill -9``) sees either the old file or
the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


TEMPORARY_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, then move the temporary file onto ``path``.

    The file gets the permissions a plain ``open`` would give it (0666 less the umask),
    not the 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=jsonable) + "\n")


def jsonable(value: Any) -> Any:
    """What ``write_json`` writes for a value JSON has no type for: a scalar tensor or numpy number as its
    Python number, a path as text; anything else is a TypeError."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def save_torch(path: Path, obj: Any) -> Path:
    import torch

    return write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_torch(path: Path, map_location=None) -> Any:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, no code."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


WEIGHTS_FILE = "model.safetensors"


def save_weights(path: Path, model) -> Path:
    """A model's state dict as safetensors: tensors only, loadable without running code.

    Tensors that share storage (a module registered under two names) are saved once.
    """
    from safetensors.torch import save_model

    return write_atomic(path, lambda tmp: save_model(model, str(tmp)))


def load_weights(path: Path, model, device="cpu") -> None:
    """Fill ``model`` from a file written by :func:`save_weights` (strict: every key must match)."""
    from safetensors.torch import load_model

    missing, unexpected = load_model(model, str(path), strict=True, device=str(device))


def clean_temporary_files(folder: Path) -> list[Path]:
    """Remove the temporary files a killed writer left under ``folder`` (``.NAME.XXXX.tmp``)."""
    removed = []
    for tmp in Path(folder).rglob(f".*{TEMPORARY_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
