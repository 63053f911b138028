"""Atomic writes and safe reads: an interrupted run never leaves a corrupt file behind.

Pickles from disk go through :class:`RestrictedUnpickler`, which builds plain containers and numpy arrays
and refuses anything else (a pickle that tries to call ``os.system`` raises :class:`UnsafePickleError`).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

from gclf.errors import GclfError


class UnsafePickleError(GclfError):
    """A pickle asked for a global that gclf does not allow."""


_ALLOWED_GLOBALS = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "str"), ("builtins", "bytes"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "bool"), ("builtins", "complex"), ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only reconstructs builtin containers, scalars and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "numpy" and name.endswith("DType"):  # numpy>=1.25 pickles dtype classes by name
            return super().find_class(module, name)
        if module.startswith("numpy.dtypes"):
            return super().find_class(module, name)
        raise UnsafePickleError(f"refused to unpickle {module}.{name}: gclf pickles hold only arrays and plain data")


def safe_load_pickle(path: str | Path) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler`; a truncated file raises GclfError."""
    data = Path(path).read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise GclfError(f"{path}: not a readable gclf pickle ({exc.__class__.__name__}: {exc})") from None


def atomic_write(path: str | Path, writer: Callable[[Any], None], mode: str = "wb", durable: bool = True) -> Path:
    """Call ``writer(fileobj)`` on a temp file in the target folder, fsync, then rename over ``path``.

    ``durable=False`` skips the fsync: still atomic for every reader (the rename), but after a power cut
    the file may be empty or torn. Only for files that are checked when read and can be made again
    (the feature cache: an unreadable pickle is redone by the next extract)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode open() would have
    try:
        with os.fdopen(fd, mode) as fh:
            writer(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_pickle(path: str | Path, obj: Any, durable: bool = True) -> Path:
    """Pickle ``obj`` to ``path`` atomically (``durable``: see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL), durable=durable)


def atomic_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=True) + "\n"), mode="w")


def atomic_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """``torch.save`` to a temp file then rename."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))
