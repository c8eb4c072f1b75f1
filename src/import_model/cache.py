"""Where import-model keeps what it learns (hub headers, file lists, the MAX registry)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$IMPORT_MODEL_CACHE``, else ``$XDG_CACHE_HOME/import-model``, else ``~/.cache/import-model``."""
    base = os.environ.get("IMPORT_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "import-model"
    )
    return Path(base)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
