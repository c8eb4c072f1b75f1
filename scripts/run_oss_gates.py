#!/usr/bin/env python3
"""Standalone form of `import-model gates`: same arguments (MODEL --port-dir DIR [--phase] [--json-out]), exit 1 on FAIL."""

import sys

from _bootstrap import run

if __name__ == "__main__":
    sys.exit(run("gates"))
