"""The interface every model source implements."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod

from import_model.errors import UserError
from import_model.source.safetensors_header import SafetensorsHeader

#: Cap for small JSON and text files (config, index, tokenizer config, card).
MAX_SMALL_FILE_BYTES = 32 * 1024 * 1024


class ModelSource(ABC):
    """A model's files, wherever they live."""

    #: What to call the model in messages and reports.
    display: str
    #: ``"local"`` or ``"hub"``.
    kind: str

    @abstractmethod
    def files(self) -> list[str]:
        """Every file in the model, as repo-relative POSIX paths."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes | None:
        """A small file's bytes (capped at ``MAX_SMALL_FILE_BYTES``), or None if absent."""

    @abstractmethod
    def safetensors_header(self, name: str) -> SafetensorsHeader:
        """The parsed header of one safetensors file, read without its tensor data."""

    def has(self, name: str) -> bool:
        return name in set(self.files())

    def read_text(self, name: str) -> str | None:
        raw = self.read_bytes(name)
        return None if raw is None else raw.decode("utf-8", errors="replace")

    def read_json(self, name: str, required: bool = False) -> dict:
        """A JSON object file; ``{}`` when absent and not required."""
        raw = self.read_bytes(name)
        if raw is None:
            if required:
                raise UserError(f"{self.display}: no {name} found; is this a Hugging Face model directory or repo?")
            return {}
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            detail = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
            raise UserError(f"{self.display}: {name} is not valid JSON ({detail}); fix or re-download it") from None
        if not isinstance(doc, dict):
            raise UserError(f"{self.display}: {name} holds a JSON {type(doc).__name__}, not an object; fix or re-download it")
        return doc
