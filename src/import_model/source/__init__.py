"""Model sources: resolve MODEL (a local directory or a hub ID) to its files.

Everything above this layer asks a :class:`ModelSource` for small files
(config, tokenizer, model card, shard index) and for safetensors *headers*;
tensor data is never read here. Hub traffic goes through ``huggingface_hub``
(``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE`` and its cache all apply).
"""

from __future__ import annotations

import re
from pathlib import Path

from import_model.errors import UserError
from import_model.source.base import ModelSource
from import_model.source.checkpoint import Checkpoint, load_checkpoint
from import_model.source.local import LocalSource

__all__ = ["Checkpoint", "ModelSource", "load_checkpoint", "load_config", "open_source"]

#: ``org/name`` as the hub accepts it (letters, digits, ``-``, ``_``, ``.``).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")


def open_source(model: str, revision: str | None = None) -> ModelSource:
    """Return the source for MODEL: an existing directory wins over a hub ID."""
    path = Path(model).expanduser()
    if path.is_dir():
        if revision:
            raise UserError(f"--revision applies to hub models only; {model} is a local directory")
        return LocalSource(path)
    if path.exists():
        raise UserError(f"{model} is a file; pass the checkpoint directory that holds config.json")
    if _looks_like_path(model) or not HUB_ID.match(model) or ".." in model:
        raise UserError(f"{model}: no such directory, and not a hub ID of the form org/name")
    from import_model.source.hub import HubSource  # huggingface_hub is imported only for hub models

    return HubSource(model, revision=revision)


def load_config(source: ModelSource) -> dict:
    """The model's ``config.json`` as a dict; anything but a JSON object is refused."""
    return source.read_json("config.json", required=True)


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or "\\" in model
