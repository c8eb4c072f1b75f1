"""Command-line values checked before a command does any work.

The ``type=`` factories (:func:`int_in`, :func:`float_in`, :func:`nonblank`) raise
``argparse.ArgumentTypeError``, so argparse prints its usage and one line
``error: argument --flag: ...`` and exits 2 before any command starts.
:func:`output_file` and :func:`output_dir` check where a command will write
(a UserError, one line, exit 2) before it spends minutes on the work.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from import_model.errors import UserError
from import_model.source import shown, user_path

#: Largest count a flag takes (sequence length, batch size): what a signed 32-bit field holds.
MAX_COUNT = 2**31 - 1
#: Longest wait any ``--timeout`` accepts, in seconds (one day).
MAX_TIMEOUT_S = 86_400.0
#: One label of a host name: letters, digits, ``-`` and ``_``, 1 to 63 characters, no ``-`` at either end.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
#: Characters of a refused value quoted back.
_SHOWN = 40


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def int_in(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (both included)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_quoted(text)} is not a whole number; "
                                             f"choose one from {low} to {high}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{_quoted(text)} is out of range; choose from {low} to {high}")
        return value

    return parse


def float_in(low: float, high: float, *, above_low: bool = False) -> Callable[[str], float]:
    """A finite number from ``low`` to ``high``; ``above_low`` excludes ``low`` itself (a timeout of 0)."""
    floor = f"above {low:g}" if above_low else f"from {low:g}"
    span = f"a finite number {floor}" + (f" to {high:g}" if math.isfinite(high) else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_quoted(text)} is not a number; choose {span}") from None
        if not math.isfinite(value) or value < low or (above_low and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"{_quoted(text)} is out of range; choose {span}")
        return value

    return parse


#: ``--timeout``: seconds, more than 0 and at most a day.
timeout_s = float_in(0.0, MAX_TIMEOUT_S, above_low=True)
#: ``--port``: a TCP port.
tcp_port = int_in(1, 65535)
#: A count of at least one (``--max-length``, ``--max-batch-size``).
count = int_in(1, MAX_COUNT)


def nonblank(text: str) -> str:
    """Text with something in it besides white space (a prompt, a name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give some text")
    return text


def host_name(text: str) -> str:
    """An IPv4 or IPv6 address or an ASCII host name (dot-separated labels, at most 253 characters)."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    labels = text.removesuffix(".").split(".")
    if len(text) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is not a host name or IP address (e.g. 127.0.0.1 or "
                                         "localhost)")
    return text


def output_file(text: str, flag: str, *, example: str = "results.json", devices_ok: bool = False) -> Path:
    """The file ``flag`` names for writing, refused in one line when no file could be written there.

    Refused: a directory, a name ending in ``/``, an existing FIFO, socket or device (a writer that
    replaces the file atomically would replace ``/dev/null`` itself; ``devices_ok`` lets a plain
    ``open`` write to a character device), and a path whose nearest existing parent is a file or
    not writable. Missing parent directories are fine: writers create them. ``example`` is the
    file name suggested when a directory was given.
    """
    path = user_path(text, flag)
    if text.endswith("/") or path.is_dir():
        raise UserError(f"{flag} {shown(text)}: is a directory; name a file to write (e.g. {shown(text.rstrip('/'))}"
                        f"/{example})")
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not (devices_ok and stat.S_ISCHR(mode)):
        raise UserError(f"{flag} {shown(text)}: not a regular file (a device, FIFO or socket); name a file to write")
    _check_writable_parent(path.absolute().parent, text, flag)
    return path


def output_dir(text: str, flag: str) -> Path:
    """The directory ``flag`` names for writing into: not a file, not ``/`` or the home directory itself."""
    from import_model.safe_io import check_output_root

    path = user_path(text, flag)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {shown(text)}: is a file, not a directory; name a directory to write into")
    check_output_root(path, flag)
    _check_writable_parent(path.absolute(), text, flag)
    return path


def port_directory(text: str, flag: str = "--port-dir") -> Path:
    """An existing port package directory, resolved (one line when it is missing or a file)."""
    path = user_path(text, flag).resolve()
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "no such directory"
        raise UserError(f"{flag} {shown(text)}: {what}; pass <output_dir>/<slug>")
    return path


def _check_writable_parent(directory: Path, text: str, flag: str) -> None:
    """The nearest existing ancestor of ``directory`` (itself included) must be a directory this user can write."""
    existing = next((p for p in (directory, *directory.parents) if p.exists()), Path(directory.anchor))
    if not existing.is_dir():
        raise UserError(f"{flag} {shown(text)}: {shown(str(existing))} is a file, not a directory; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {shown(text)}: cannot write in {shown(str(existing))} (permission denied); "
                        "choose another path")
