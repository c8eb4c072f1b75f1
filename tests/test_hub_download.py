"""``HubSource.download`` (what ``compare`` loads its HF reference from) against a local, sometimes hostile, mirror.

Whole files stream under byte budgets (a safetensors file exactly as long as its
header declares, other files at most ``MAX_SMALL_FILE_BYTES``), into the
import-model cache by commit, renamed into place only when whole, within
``IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE``. Every failure is one ``UserError`` line.
"""

from __future__ import annotations

import json
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from import_model.errors import UserError
from import_model.source import hub as hub_module
from import_model.source import open_source
from import_model.source.hub import HubSource, hub_download_deadline_s
from import_model.verify.compare import resolve_checkpoint
from tests.support.hub_mirror import Fault, VirtualFile
from tests.support.mirror_fixtures import HubEnv

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "vocab_size": 512}
#: What the kernel may buffer between the mirror and a client that stopped reading (socket buffers on loopback).
SLACK = 8 * 1024 * 1024
#: The files a download must bring (the patterns compare always used); README.md and the pickle stay behind.
WANTED = {"config.json", "model.safetensors", "tokenizer.json", "sub/merges.txt"}


@pytest.fixture
def repo_files(tmp_path: Path) -> dict[str, bytes]:
    """A tiny real checkpoint as ``{name: bytes}``: about 1 MiB of weights plus small files."""
    shard = tmp_path / "model.safetensors"
    tensors = {"model.embed_tokens.weight": np.arange(512 * 512, dtype=np.float32).reshape(512, 512),
               "model.norm.weight": np.ones((64,), dtype=np.float32)}
    save_file(tensors, str(shard), metadata={"format": "pt"})
    return {
        "config.json": json.dumps(CONFIG).encode(),
        "model.safetensors": shard.read_bytes(),
        "tokenizer.json": json.dumps({"model": {"vocab": {f"t{i}": i for i in range(300)}}}).encode(),
        "sub/merges.txt": b"#version: 0.2\na b\n",
        "README.md": b"# tiny\n",
        "pytorch_model.bin": b"not fetched",
    }


def _source(repo: str = "org/tiny") -> HubSource:
    source = open_source(repo)
    assert isinstance(source, HubSource)
    return source


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "\x1b" not in message and "Traceback" not in message, message
    assert len(message) < 500, message


def _stored(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _whole_file_gets(env: HubEnv, name: str) -> int:
    """GETs of ``name`` that ask for the whole file (no Range), i.e. downloads rather than header reads."""
    env.mirror.wait_idle()
    return sum(1 for r in env.mirror.requests if r.path.endswith(f"/{name}") and r.method == "GET" and r.range is None)


def _leftovers(env: HubEnv) -> list[Path]:
    return [p for p in env.import_model_cache.rglob("*.part")]


# -- a healthy download ------------------------------------------------------------------------


def test_tiny_repo_downloads_whole_and_byte_identical(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    sha = hub_env.mirror.add_repo("org/tiny", repo_files)
    lines: list[str] = []
    root = _source().download(progress=lines.append)
    assert root.is_relative_to(hub_env.import_model_cache.resolve())
    assert root.parts[-2:] == (sha, "snapshot")
    assert _stored(root) == {name: repo_files[name] for name in WANTED}
    assert not _leftovers(hub_env)
    assert any("model.safetensors" in line and "1.0 MiB" in line for line in lines), lines
    assert all("\n" not in line for line in lines)
    assert not any(hub_env.hub_cache.rglob("*.safetensors"))  # nothing went through huggingface_hub's own cache


def test_resolve_checkpoint_downloads_through_the_hub_source(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    lines: list[str] = []
    checkpoint = resolve_checkpoint("org/tiny", None, lines.append)
    assert checkpoint == _source().download()
    assert _stored(checkpoint) == {name: repo_files[name] for name in WANTED}
    assert lines and _whole_file_gets(hub_env, "model.safetensors") == 1


def test_local_directory_is_used_in_place(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    assert resolve_checkpoint(str(tmp_path), None) == tmp_path.resolve()


def test_rerun_reuses_the_stored_files(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    first = _source().download()
    hub_env.mirror.wait_idle()
    hub_env.mirror.reset_counters()
    assert _source().download() == first
    hub_env.mirror.wait_idle()
    assert hub_env.mirror.count_requests("org/tiny/resolve/*") == 0  # only the listing was asked for
    hub_env.offline()
    assert _source().download() == first
    assert _stored(first) == {name: repo_files[name] for name in WANTED}


def test_a_damaged_file_is_fetched_again_alone(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    root = _source().download()
    (root / "model.safetensors").write_bytes(repo_files["model.safetensors"][:1000])  # a wrong size: not complete
    hub_env.mirror.wait_idle()
    hub_env.mirror.reset_counters()
    _source().download()
    assert (root / "model.safetensors").read_bytes() == repo_files["model.safetensors"]
    assert _whole_file_gets(hub_env, "model.safetensors") == 1
    assert hub_env.mirror.count_requests("org/tiny/resolve/*") == 1


def test_offline_without_a_download_is_one_line(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    source = _source()
    source.safetensors_header("model.safetensors")  # listing and header cached, files never fetched
    hub_env.offline()
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set and .* was never downloaded") as info:
        _source().download()
    _one_line(str(info.value))


def test_cut_body_is_resumed_with_a_range(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    source = _source()
    source.safetensors_header("model.safetensors")
    fault = hub_env.mirror.inject(Fault.cut("*/model.safetensors", after_bytes=300_000, times=1))
    root = source.download()
    assert fault.hits == 1
    assert (root / "model.safetensors").read_bytes() == repo_files["model.safetensors"]
    hub_env.mirror.wait_idle()
    gets = [r for r in hub_env.mirror.requests if r.path.endswith("/model.safetensors") and r.fault is None]
    assert gets[-1].range is not None and gets[-1].range.startswith("bytes=") and gets[-1].range != "bytes=0-"
    assert gets[-1].body_bytes == len(repo_files["model.safetensors"]) - int(gets[-1].range[6:-1])


# -- budgets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["declared-length", "no-length"])
def test_oversized_safetensors_is_cut_and_refused(hub_env: HubEnv, repo_files: dict[str, bytes], chunked: bool) -> None:
    real = repo_files["model.safetensors"]
    longer = VirtualFile(head=real, size=len(real) + 64 * 1024 * 1024)  # the header declares len(real)
    hub_env.mirror.add_repo("org/long", {**repo_files, "model.safetensors": longer})
    if chunked:
        hub_env.mirror.inject(Fault.chunked("*/model.safetensors"))
    source = _source("org/long")
    with pytest.raises(UserError, match=f"sent more of model.safetensors than the {len(real)} bytes its header") as info:
        source.download()
    _one_line(str(info.value))
    assert hub_env.mirror.wait_idle(10)
    sent = hub_env.mirror.bytes_sent_for("org/long/model.safetensors")
    assert sent <= len(real) + SLACK < longer.size
    if chunked:  # no length to refuse on: the body itself was read up to the declared size
        assert sent >= len(real)
        assert source.bytes_fetched <= len(real) + 1024 * 1024
    assert not (source._commit_path("snapshot") / "model.safetensors").exists()
    assert not _leftovers(hub_env)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared-length", "no-length"])
def test_truncated_safetensors_is_refused(hub_env: HubEnv, repo_files: dict[str, bytes], chunked: bool) -> None:
    real = repo_files["model.safetensors"]
    hub_env.mirror.add_repo("org/short", {**repo_files, "model.safetensors": real[: len(real) // 2]})
    if chunked:
        hub_env.mirror.inject(Fault.chunked("*/model.safetensors"))
    source = _source("org/short")
    pattern = f"sent {len(real) // 2 if chunked else '[0-9]+'} bytes of model.safetensors, whose header declares {len(real)}"
    with pytest.raises(UserError, match=pattern) as info:
        source.download()
    _one_line(str(info.value))
    assert "truncated" in str(info.value)
    assert not (source._commit_path("snapshot") / "model.safetensors").exists()
    assert not _leftovers(hub_env)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared-length", "no-length"])
def test_small_file_over_its_cap_is_refused(hub_env: HubEnv, repo_files: dict[str, bytes], chunked: bool) -> None:
    hub_env.monkeypatch.setattr(hub_module, "MAX_SMALL_FILE_BYTES", 4096)
    hub_env.mirror.add_repo("org/cap", {**repo_files, "tokenizer.json": b"{" + b" " * 5000 + b"}"})
    if chunked:
        hub_env.mirror.inject(Fault.chunked("*/tokenizer.json"))
    source = _source("org/cap")
    with pytest.raises(UserError, match="tokenizer.json is more than 4096 bytes") as info:
        source.download()
    _one_line(str(info.value))
    assert not (source._commit_path("snapshot") / "tokenizer.json").exists()


def test_no_room_is_refused_before_any_file(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    usage = namedtuple("usage", "total used free")
    hub_env.monkeypatch.setattr(hub_module.shutil, "disk_usage", lambda _path: usage(10**6, 10**6 - 4096, 4096))
    source = _source()
    with pytest.raises(UserError, match=r"the download needs up to .*MiB of weights.* has 0\.0 MiB free") as info:
        source.download()
    _one_line(str(info.value))
    assert _whole_file_gets(hub_env, "model.safetensors") == 0 and _whole_file_gets(hub_env, "config.json") == 0
    assert not _stored(source._commit_path("snapshot"))


# -- the download's deadline ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_trickling_download_hits_its_deadline(hub_env: HubEnv, repo_files: dict[str, bytes], name: str) -> None:
    hub_env.mirror.add_repo("org/slow", repo_files)
    hub_env.fast_failures(retries=2, timeout_s=5)
    hub_env.monkeypatch.setattr(hub_module, "HUB_DOWNLOAD_DEADLINE_S", 1.5)
    source = _source("org/slow")
    source.safetensors_header("model.safetensors")  # header reads stay quick; only the download trickles
    fault = hub_env.mirror.inject(Fault.trickle(f"*/{name}", bytes_per_second=4))  # the config alone takes 25 s
    started = time.monotonic()
    with pytest.raises(UserError, match=r"exceeded the 1\.5 s deadline \(IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE\)") as info:
        source.download()
    elapsed = time.monotonic() - started
    _one_line(str(info.value))
    assert fault.hits == 1 and 1.4 < elapsed < 10, elapsed
    assert not (source._commit_path("snapshot") / name).exists()
    assert not _leftovers(hub_env)


def test_download_deadline_is_its_own(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    """A transfer that outlasts IMPORT_MODEL_HUB_DEADLINE but not the download deadline succeeds."""
    hub_env.mirror.add_repo("org/steady", repo_files)
    hub_env.deadline(1.0)
    hub_env.monkeypatch.setattr(hub_module, "HUB_DOWNLOAD_DEADLINE_S", 30.0)
    hub_env.mirror.inject(Fault.trickle("*/config.json", bytes_per_second=80))  # about 1.5 s for the config
    started = time.monotonic()
    root = _source("org/steady").download()
    assert time.monotonic() - started > 1.0
    assert (root / "config.json").read_bytes() == repo_files["config.json"]


def test_download_deadline_default_and_bad_value(hub_env: HubEnv) -> None:
    hub_env.monkeypatch.delenv("IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE", raising=False)
    assert hub_download_deadline_s(0) == 3600.0
    assert hub_download_deadline_s(140 * 10**9) == 3600.0 + 13352  # a 70B-parameter model: under five hours
    hub_env.monkeypatch.setenv("IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE", "120")
    assert hub_download_deadline_s(140 * 10**9) == 120.0
    hub_env.monkeypatch.setenv("IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE", "soon\x1b[2J")
    with pytest.raises(UserError, match="IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE=.* is not a number of seconds") as info:
        hub_download_deadline_s(0)
    _one_line(str(info.value))


# -- paths ----------------------------------------------------------------------------------------


def test_snapshot_link_leading_outside_is_refused(hub_env: HubEnv, repo_files: dict[str, bytes], tmp_path: Path) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    source = _source()
    outside = tmp_path / "outside"
    outside.mkdir()
    snapshot = source._meta_dir() / source.commit / "snapshot"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.symlink_to(outside, target_is_directory=True)
    with pytest.raises(UserError, match="outside the import-model cache") as info:
        source.download()
    _one_line(str(info.value))
    assert not any(outside.iterdir())


def test_hostile_names_are_never_downloaded(hub_env: HubEnv, repo_files: dict[str, bytes], tmp_path: Path) -> None:
    hostile = {"../escaped.json": b"{}", "/tmp/abs.json": b"{}", "a/../../up.json": b"{}", "esc\x1b[2J.json": b"{}"}
    hub_env.mirror.add_repo("org/names", {**repo_files, **hostile})
    root = _source("org/names").download()
    assert set(_stored(root)) == WANTED
    assert not list(hub_env.import_model_cache.parent.rglob("escaped.json"))
    hub_env.mirror.wait_idle()
    assert not any("escaped" in r.path or "abs.json" in r.path or "up.json" in r.path for r in hub_env.mirror.requests)
