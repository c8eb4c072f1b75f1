"""Environments for child processes.

MAX's native runtime, once loaded, sets ``PYTHONEXECUTABLE`` and ``PYTHONPATH``
in the C-level environment of the process. A child started with the default
environment inherits those and may run another interpreter without this
virtualenv. ``os.environ`` is Python's own copy, untouched by that, so children
are always given it explicitly.
"""

from __future__ import annotations

import os


def child_env(**extra: str) -> dict[str, str]:
    """``os.environ`` as this program sees it, plus ``extra``: pass as ``env=`` to every child process."""
    env = dict(os.environ)
    env.update(extra)
    return env
