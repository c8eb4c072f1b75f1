"""Committed results tables (docs/*-matrix.md) that a partial rerun updates instead of truncating."""

from __future__ import annotations

from pathlib import Path


def merged_rows(path: Path, rows: list[str], key_columns: int = 1) -> list[str]:
    """This run's table rows, plus the earlier rows of ``path`` whose key (first cells) this run did not touch."""

    def key(row: str) -> tuple[str, ...]:
        return tuple(cell.strip() for cell in row.split("|")[1:1 + key_columns])

    fresh = {key(row): row for row in rows}
    kept = []
    if path.is_file():
        table = [row for row in path.read_text().splitlines() if row.startswith("| ")]
        kept = [row for row in table[1:] if key(row) not in fresh]  # table[0] is the header row
    return sorted(kept + list(fresh.values()))
