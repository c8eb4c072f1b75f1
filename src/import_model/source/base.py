"""The interface every model source implements."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod

from import_model.errors import UserError
from import_model.safe_output import walk_json
from import_model.source.safetensors_header import SafetensorsHeader

#: Cap for small JSON and text files (config, index, tokenizer config, card).
MAX_SMALL_FILE_BYTES = 32 * 1024 * 1024
#: Deepest nesting of objects and arrays accepted in a JSON file read with ``read_json``.
#: Real configs nest a handful of levels (``text_config.rope_scaling``); far deeper ones are
#: hostile, and code that walks a config recursively (deepcopy, transformers) would overflow.
MAX_JSON_DEPTH = 64
#: The optional model card.
CARD_FILE = "README.md"


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

    def read_card(self) -> tuple[str | None, str | None]:
        """The model card's text, or None and a note saying why it was skipped.

        The card is optional: one that cannot be read (too large, unreadable) is skipped
        so the command goes on without it. ``(None, None)`` means the repo has no card.
        """
        if not self.has(CARD_FILE):
            return None, None
        try:
            return self.read_text(CARD_FILE), None
        except UserError as exc:
            return None, f"model card {CARD_FILE} skipped, the command goes on without it ({exc.message})"

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
        if json_depth(doc) > MAX_JSON_DEPTH:
            raise UserError(f"{self.display}: {name} nests objects or arrays deeper than {MAX_JSON_DEPTH} levels; "
                            "no real config does: fix or re-download it")
        return doc


def json_depth(doc: object) -> int:
    """How deeply objects and arrays nest in a parsed JSON value (a scalar is 0); stops once past the limit."""
    deepest = 0
    for value, _where, depth in walk_json(doc):
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
    return deepest
