"""A checkpoint built once into the project's cache, safe against concurrent builders and half-finished runs."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

#: Written last into a finished build; a folder whose marker differs from the wanted one is rebuilt.
MARKER = ".build.json"


def is_complete(path: Path, marker: dict[str, object]) -> bool:
    try:
        return json.loads((path / MARKER).read_text()) == marker and (path / "config.json").exists()
    except (OSError, ValueError):
        return False


def build_once(target: Path, marker: dict[str, object], build: Callable[[Path], None]) -> Path:
    """``target``, built by ``build(folder)`` into a staging folder and moved in place, unless already complete."""
    if is_complete(target, marker):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        build(tmp)
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if is_complete(target, marker):  # another process finished first
            return target
        if target.exists():  # an incomplete or stale build: move it aside, then drop it
            os.rename(target, old)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target
