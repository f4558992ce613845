"""Adapter-only checkpoints inside ESPnet's trainer.

ESPnet saves ``model.state_dict()`` every epoch (``{epoch}epoch.pth``, ``checkpoint.pth``),
averages the n best of those files, and resumes with a strict ``load_state_dict``. Installing
these hooks on a PEFT model makes ``state_dict()`` return only the adapter state (plus the
base-model fingerprints), and makes ``load_state_dict`` accept such a state: the frozen
pretrained tensors, which the model already holds, are not expected; a state trained on
another base model is refused.

Artefacts are written atomically (:func:`save_atomic`): to a temporary name in the same directory,
then renamed into place, so that a write that fails part-way (no space left on the device, a file
too large) never leaves a truncated file under the final name and a good file already there stays
intact; the error names the path and says why. :func:`atomic_saves` routes ESPnet's own
``torch.save`` calls (epoch checkpoints, ``checkpoint.pth``, averaged models) through it while a
PEFT training runs.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch
from torch import nn

from .errors import WriteFailed
from .state import peft_state_dict, record_mismatch


def _save_hook(module, state_dict, prefix, local_metadata):
    keep = peft_state_dict(module, clone=False)
    for k in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[k]
    for k, v in keep.items():
        state_dict[prefix + k] = v
    return state_dict


def _load_pre_hook(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    problem, rest = record_mismatch(module, state_dict, prefix)
    for k in set(state_dict) - set(rest):  # the base and config records are not tensors of the model
        del state_dict[k]
    if problem:
        error_msgs.append(problem)


def _load_post_hook(module, incompatible):
    expected = set(peft_state_dict(module, clone=False))
    # frozen pretrained tensors are not part of an adapter-only state: not missing
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys
                                    if k in expected or (k.startswith("module.") and k[7:] in expected)]


def install_adapter_only_checkpointing(model: nn.Module) -> None:
    """Make ``model.state_dict()`` adapter-only and ``model.load_state_dict`` accept it."""
    if getattr(model, "_peft_checkpoint_hooks", None):
        return
    model._peft_checkpoint_hooks = (
        model._register_state_dict_hook(_save_hook),
        model._register_load_state_dict_pre_hook(_load_pre_hook, with_module=True),
        model.register_load_state_dict_post_hook(_load_post_hook),
    )


def remove_adapter_only_checkpointing(model: nn.Module) -> None:
    for h in getattr(model, "_peft_checkpoint_hooks", None) or ():
        h.remove()
    model._peft_checkpoint_hooks = None


def complete_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's complete state dict, hooks or not."""
    hooks = getattr(model, "_peft_checkpoint_hooks", None)
    if not hooks:
        return model.state_dict()
    remove_adapter_only_checkpointing(model)
    try:
        return model.state_dict()
    finally:
        install_adapter_only_checkpointing(model)


# --------------------------------------------------------------------------- atomic writes
#: torch's zip writer (inline_container.cc) when a write came up short
_UNEXPECTED_POS = re.compile(r"unexpected pos \d+ vs \d+")
_REASONS = {errno.ENOSPC: "no space left on device", errno.EFBIG: "file too large",
            errno.EDQUOT: "disk quota exceeded"}


def _os_error(e: BaseException) -> Optional[OSError]:
    """The OSError behind ``e``: itself, or the one torch's zip writer swallowed (its RuntimeError
    "unexpected pos" has the write's OSError as context)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno is not None:
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _open_temp(path: Path):
    """A new file beside ``path`` under a hidden temporary name (mode 0666 less the umask)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    return tmp, os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")


def write_failure(path: os.PathLike, what: str, e: BaseException) -> Optional[WriteFailed]:
    """A :class:`WriteFailed` naming ``path`` and the cause, or None if ``e`` is not a write failure."""
    os_err = _os_error(e)
    if os_err is not None:
        reason = _REASONS.get(os_err.errno, os_err.strerror or str(os_err))
    elif isinstance(e, RuntimeError) and _UNEXPECTED_POS.search(str(e)):
        reason = (f"the write stopped part-way (PyTorch: {_UNEXPECTED_POS.search(str(e)).group(0)}): most likely "
                  f"no space left on device or a file too large for the file system")
    else:
        return None
    return WriteFailed(f"cannot write {what} {path}: {reason}. Nothing was written under that name (a file "
                       f"already there is kept); free space or write elsewhere, then run again")


def save_atomic(obj: Any, path: os.PathLike, what: str = "checkpoint", save=None) -> None:
    """``torch.save(obj, path)``, atomically: written to a temporary file in the same directory,
    flushed to disk, then renamed over ``path``. A failed write leaves no file under ``path`` (an
    existing one is kept) and no temporary file, and raises :class:`WriteFailed` naming ``path`` and
    the cause ("no space left on device", "file too large", ...). ``save``: the writer (default
    ``torch.save``, looked up at call time)."""
    save = save or torch.save
    final = Path(path)
    if final.is_symlink():  # write through a link, as torch.save does, and keep the link
        final = Path(os.path.realpath(final))
    tmp, fh = _open_temp(final)
    try:
        try:
            with fh:
                save(obj, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except Exception as e:
            failure = write_failure(path, what, e)
            if failure is None:
                raise
            raise failure from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _is_path(f: Any) -> bool:
    return isinstance(f, (str, os.PathLike))


@contextlib.contextmanager
def atomic_saves(what: str = "checkpoint") -> Iterator[None]:
    """Within the block, ``torch.save(obj, <path>)`` is :func:`save_atomic` (writes to file objects
    are left alone). ESPnet's trainer writes ``checkpoint.pth``, ``N.epoch.pth`` and the averaged
    models with ``torch.save``; a disk out of space then fails with the path named, and the files of
    the previous epoch stay intact."""
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if not _is_path(f):
            return original(obj, f, *args, **kwargs)
        return save_atomic(obj, f, what, save=lambda o, fh: original(o, fh, *args, **kwargs))

    torch.save = save
    try:
        yield
    finally:
        torch.save = original
