"""A checkpoint directory on disk."""

from __future__ import annotations

import os
from pathlib import Path

from import_model.errors import UserError
from import_model.safe_io import FileRefused, open_regular, read_bounded
from import_model.source.base import MAX_SMALL_FILE_BYTES, ModelSource
from import_model.source.safetensors_header import (
    SafetensorsHeader,
    declared_header_length,
    parse_header_json,
)

#: Directories never listed as model files.
_SKIPPED_DIRS = {".git", ".cache", "__pycache__"}


class LocalSource(ModelSource):
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.display = str(root)
        self._files: list[str] | None = None

    def files(self) -> list[str]:
        if self._files is None:
            found = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
                rel = Path(dirpath).relative_to(self.root)
                found.extend((rel / f).as_posix() for f in sorted(filenames))
            self._files = found
        return self._files

    def _path(self, name: str) -> Path:
        """The file for a repo-relative name; names that climb out of the directory are refused.

        Symlinks inside the directory are followed: the Hugging Face cache lays out every
        snapshot as links into its blob store.
        """
        path = Path(os.path.normpath(self.root / name))
        if not path.is_relative_to(self.root):
            raise UserError(f"{self.display}: refusing to read {name!r}, which points outside the model directory")
        return path

    def read_bytes(self, name: str) -> bytes | None:
        path = self._path(name)
        if not path.exists():
            return None
        try:
            return read_bounded(path, MAX_SMALL_FILE_BYTES, f"metadata file {name} of {self.display}")
        except FileRefused as exc:
            if exc.missing:  # removed between the look and the read
                return None
            raise

    def safetensors_header(self, name: str) -> SafetensorsHeader:
        path = self._path(name)
        if not path.exists():
            raise UserError(f"{self.display}: {name} is listed in the shard index but absent; re-download the checkpoint")
        with open_regular(path, f"safetensors file {name} of {self.display}") as handle:
            size = os.fstat(handle.fileno()).st_size
            length = declared_header_length(handle.read(8), name, size)
            raw = handle.read(length)
        if len(raw) < length:
            raise UserError(f"{self.display}: {name} ended inside its safetensors header; re-download the checkpoint")
        return parse_header_json(raw, name, data_size=size - 8 - length)
