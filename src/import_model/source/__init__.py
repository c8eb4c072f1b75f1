"""Model sources: resolve MODEL (a local directory or a hub ID) to its files.

Everything above this layer asks a :class:`ModelSource` for small files
(config, tokenizer, model card, shard index) and for safetensors *headers*;
tensor data is never read here. Hub traffic goes through ``huggingface_hub``
(``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE`` and its cache all apply).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from import_model.errors import UserError
from import_model.source.base import ModelSource
from import_model.source.checkpoint import Checkpoint, load_checkpoint
from import_model.source.local import LocalSource

__all__ = ["Checkpoint", "ModelSource", "load_checkpoint", "load_config", "open_source", "shown", "user_path"]

#: ``org/name`` as the hub accepts it (letters, digits, ``-``, ``_``, ``.``).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}", re.ASCII)
#: Longest file name (one path component) and whole path, in bytes, that Linux and macOS accept.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095
#: Characters of a user's path or MODEL quoted in an error line.
SHOWN_CHARS = 100


def shown(text: str) -> str:
    """``text`` cut to :data:`SHOWN_CHARS` for an error line (a 5,000-character argument is not echoed whole)."""
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 20]}...{text[-17:]}"


def user_path(text: str, flag: str) -> Path:
    """A path argument with ``~`` expanded, refused in one line when the system could not use it.

    ``~nouser`` (expanduser raises RuntimeError), names longer than the system allows and
    paths ``stat`` cannot look at (a symlink loop, no permission) become a UserError naming
    ``flag``; a path that does not exist yet is fine (writers create it).
    """
    if not text.strip():
        raise UserError(f"{flag}: the path is empty; name a directory or file")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        raise UserError(f"{flag} {shown(text)}: cannot expand ~ (no such user); write the path out in full") from None
    encoded = os.fsencode(path)
    if len(encoded) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise UserError(f"{flag} {shown(text)}: path too long (at most {MAX_NAME_BYTES} bytes a name, "
                        f"{MAX_PATH_BYTES} in all); choose a shorter one")
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UserError(f"{flag} {shown(text)}: cannot use this path ({reason})") from None
    return path


def open_source(model: str, revision: str | None = None) -> ModelSource:
    """Return the source for MODEL: an existing directory wins over a hub ID."""
    path = user_path(model, "MODEL")
    if path.is_dir():
        if revision:
            raise UserError(f"--revision applies to hub models only; {shown(model)} is a local directory")
        return LocalSource(path)
    if path.exists():
        raise UserError(f"{shown(model)} is a file; pass the checkpoint directory that holds config.json")
    if _looks_like_path(model) or not HUB_ID.fullmatch(model) or ".." in model:
        raise UserError(f"{shown(model)}: no such directory, and not a hub ID of the form org/name")
    from import_model.source.hub import HubSource  # huggingface_hub is imported only for hub models

    return HubSource(model, revision=revision)


def load_config(source: ModelSource) -> dict:
    """The model's ``config.json`` as a dict; anything but a JSON object is refused."""
    return source.read_json("config.json", required=True)


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or "\\" in model
