#!/usr/bin/env python3
"""Dispatcher: `python scripts/import_model.py COMMAND ...` is `import-model COMMAND ...`."""

import sys

from _bootstrap import run

if __name__ == "__main__":
    sys.exit(run(None))
