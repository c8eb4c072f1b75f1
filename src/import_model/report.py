"""Terminal output: readable tables for people, JSON for programs, progress on stderr.

Every string that reaches the terminal here may come from a user or a model
(a tensor name, a config key, a path, a model card), so none of it is parsed as
rich markup and control characters are shown as escapes (see
:func:`import_model.safe_output.visible`). The tool's own styling is applied
with ``rich.text.Text`` styles, never with markup inside the data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from import_model.safe_output import strict_json, visible

__all__ = ["console", "emit_json", "err_console", "error", "heading", "line", "progress", "table", "visible"]

_console: Console | None = None
_err_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        width = None if sys.stdout.isatty() else _columns()
        _console = Console(width=width, highlight=False, soft_wrap=False)
    return _console


def _columns() -> int:
    """Table width when stdout is not a terminal: ``$COLUMNS`` if it is a sensible number, else 160."""
    raw = os.environ.get("COLUMNS", "").strip()
    return int(raw) if raw.isdigit() and 20 <= int(raw) <= 10_000 else 160


def err_console() -> Console:
    global _err_console
    if _err_console is None:
        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


def progress(message: str) -> None:
    """A progress line on stderr, so stdout stays clean for --json."""
    err_console().print(Text(f"… {visible(message)}", style="dim"))


def error(message: str) -> None:
    """One line on stderr: a red ``error:`` and the message, newlines shown as ``\\n``."""
    err_console().print(Text.assemble(("error:", "bold red"), " ", visible(message)))


def emit_json(payload: Any) -> None:
    """Strict JSON on stdout: NaN and infinities are written as ``null``."""
    sys.stdout.write(strict_json(payload, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    caption = None if title is None else Text(visible(title), style="table.title")
    grid = Table(title=caption, title_justify="left", show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(Text(visible(str(column))), overflow="fold")
    for row in rows:
        grid.add_row(*(Text(visible(_cell(v))) for v in row))
    console().print(grid)


def heading(text: str) -> None:
    console().print(Text.assemble("\n", (visible(text), "bold")))


def line(text: str = "", style: str | None = None) -> None:
    """Text as given (multi-line allowed; no markup, no ``:emoji:`` codes), other control characters escaped."""
    console().print(Text(visible(text, multiline=True), style=style or ""))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        text = strict_json(value, indent=None)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)
