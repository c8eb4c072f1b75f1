"""Terminal output: readable tables for people, JSON for programs, progress on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

_console: Console | None = None
_err_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
        _console = Console(width=width, highlight=False, soft_wrap=False)
    return _console


def err_console() -> Console:
    global _err_console
    if _err_console is None:
        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


def progress(message: str) -> None:
    """A progress line on stderr, so stdout stays clean for --json."""
    err_console().print(f"[dim]… {message}[/dim]")


def error(message: str) -> None:
    err_console().print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False)


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(v) for v in row))
    console().print(grid)


def heading(text: str) -> None:
    console().print(f"\n[bold]{text}[/bold]")


def line(text: str = "", style: str | None = None) -> None:
    console().print(text, style=style, markup=False, highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)
