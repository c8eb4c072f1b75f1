"""``python -m import_model COMMAND ...``."""

from import_model.cli import run

run()
