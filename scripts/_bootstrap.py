"""Let the seed-named scripts run from a checkout even when the package is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

_SCRIPTS = Path(__file__).resolve().parent


def run(command: str | None) -> int:
    # scripts/import_model.py would shadow the package of the same name: take this folder off the path.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _SCRIPTS]
    try:
        from import_model.cli import main
    except ImportError:
        sys.path.insert(0, str(_SCRIPTS.parent / "src"))
        from import_model.cli import main
    argv = sys.argv[1:] if command is None else [command, *sys.argv[1:]]
    return main(argv)
