"""Pytest fixtures that run a :class:`HubMirror` and point ``huggingface_hub`` at it.

Import them into a conftest (or a test module) with
``from tests.support.mirror_fixtures import *``.

* ``hub_mirror``: a running, empty mirror (function scope); nothing else changed.
* ``hub_env``: ``hub_mirror`` plus an isolated hub setup for in-process tests:
  ``HF_ENDPOINT`` points at the mirror, ``HF_HOME`` / ``HF_HUB_CACHE`` /
  ``IMPORT_MODEL_CACHE`` are fresh temp dirs, no token, online, few retries
  and a short timeout. ``huggingface_hub`` reads its settings into
  ``huggingface_hub.constants`` at import, and ``import_model.source.hub``
  takes ``HUB_RETRIES`` / ``HUB_TIMEOUT_S`` / ``HUB_DEADLINE_S`` over the
  environment when they are set, so both the env vars (for subprocesses:
  ``hub_env.subprocess_env()``) and those module globals (for this process)
  are patched. Returns a :class:`HubEnv`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.hub_mirror import HubMirror

__all__ = ["HubEnv", "hub_env", "hub_mirror", "point_hub_at"]

#: Settings every ``hub_env`` test starts with; fault tests may tighten them with ``hub_env.fast_failures()``.
DEFAULT_RETRIES = 1
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_DEADLINE_S = 60.0


@dataclass
class HubEnv:
    """A mirror plus the isolated environment that ``huggingface_hub`` and import-model use."""

    mirror: HubMirror
    monkeypatch: pytest.MonkeyPatch
    hf_home: Path
    hub_cache: Path
    import_model_cache: Path

    @property
    def endpoint(self) -> str:
        return self.mirror.endpoint

    def offline(self, enabled: bool = True) -> None:
        """Switch ``HF_HUB_OFFLINE`` in the environment and in ``huggingface_hub.constants``."""
        from huggingface_hub import constants

        self.monkeypatch.setenv("HF_HUB_OFFLINE", "1" if enabled else "0")
        self.monkeypatch.setattr(constants, "HF_HUB_OFFLINE", enabled)

    def token(self, value: str | None) -> None:
        """Set (or clear) ``HF_TOKEN``; ``huggingface_hub`` reads it on every request."""
        if value is None:
            self.monkeypatch.delenv("HF_TOKEN", raising=False)
        else:
            self.monkeypatch.setenv("HF_TOKEN", value)

    def fast_failures(self, retries: int = 1, timeout_s: float = 0.5) -> None:
        """Few retries and a short timeout, so fault tests fail in about a second."""
        _set_hub_limits(self.monkeypatch, retries, timeout_s)

    def deadline(self, seconds: float) -> None:
        """Set the per-source deadline for all hub traffic (``IMPORT_MODEL_HUB_DEADLINE``)."""
        from import_model.source import hub

        self.monkeypatch.setenv("IMPORT_MODEL_HUB_DEADLINE", str(seconds))
        self.monkeypatch.setattr(hub, "HUB_DEADLINE_S", seconds)

    def use_env_limits(self) -> None:
        """Drop the module-global overrides so ``import_model.source.hub`` reads the env vars again."""
        from import_model.source import hub

        for name in ("HUB_RETRIES", "HUB_TIMEOUT_S", "HUB_DEADLINE_S"):
            self.monkeypatch.setattr(hub, name, None)

    def subprocess_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for a child process that sees the same mirror, caches and limits."""
        from huggingface_hub import constants

        from import_model.source import hub

        env = dict(os.environ if base is None else base)
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_HOME=str(self.hf_home),
            HF_HUB_CACHE=str(self.hub_cache),
            IMPORT_MODEL_CACHE=str(self.import_model_cache),
            HF_HUB_OFFLINE="1" if constants.HF_HUB_OFFLINE else "0",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            IMPORT_MODEL_HUB_RETRIES=str(hub.hub_retries()),
            IMPORT_MODEL_HUB_TIMEOUT=str(hub.hub_timeout_s()),
            IMPORT_MODEL_HUB_DEADLINE=str(hub.hub_deadline_s()),
        )
        return env


def point_hub_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, root: Path) -> None:
    """Point env vars and ``huggingface_hub.constants`` at ``endpoint``, with caches under ``root``.

    Usable on its own (e.g. with a module-scoped mirror); ``hub_env`` calls it.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    hf_home, hub_cache, im_cache = root / "hf-home", root / "hf-home" / "hub", root / "import-model-cache"
    for path in (hub_cache, im_cache):
        path.mkdir(parents=True, exist_ok=True)
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "IMPORT_MODEL_CACHE": str(im_cache),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_OFFLINE", "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    patches = {
        "ENDPOINT": endpoint,
        # hf_hub_url formats this template, built from ENDPOINT at import time.
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_PROGRESS_BARS": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    close_session()  # pooled connections may point at an earlier test's mirror


def _set_hub_limits(monkeypatch: pytest.MonkeyPatch, retries: int, timeout_s: float) -> None:
    from import_model.source import hub

    monkeypatch.setenv("IMPORT_MODEL_HUB_RETRIES", str(retries))
    monkeypatch.setenv("IMPORT_MODEL_HUB_TIMEOUT", str(timeout_s))
    monkeypatch.setattr(hub, "HUB_RETRIES", retries)
    monkeypatch.setattr(hub, "HUB_TIMEOUT_S", timeout_s)


@pytest.fixture
def hub_mirror() -> Iterator[HubMirror]:
    """A running, empty hub mirror; add repos with ``hub_mirror.add_repo``."""
    with HubMirror() as mirror:
        yield mirror


@pytest.fixture
def hub_env(
    hub_mirror: HubMirror, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubEnv]:
    """``hub_mirror`` with ``huggingface_hub`` and import-model pointed at it, caches isolated."""
    from huggingface_hub.utils import close_session

    root = tmp_path_factory.mktemp("hub-env")
    point_hub_at(monkeypatch, hub_mirror.endpoint, root)
    _set_hub_limits(monkeypatch, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S)
    env = HubEnv(
        mirror=hub_mirror,
        monkeypatch=monkeypatch,
        hf_home=root / "hf-home",
        hub_cache=root / "hf-home" / "hub",
        import_model_cache=root / "import-model-cache",
    )
    env.deadline(DEFAULT_DEADLINE_S)
    yield env
    close_session()
