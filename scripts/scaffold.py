#!/usr/bin/env python3
"""Standalone form of `import-model scaffold`: same arguments, same exit codes."""

import sys

from _bootstrap import run

if __name__ == "__main__":
    sys.exit(run("scaffold"))
