"""A hostile hub: server-chosen paths, oversized and trickling bodies, a deadline, bad limits.

Every test talks to the local mirror (``tests/support/hub_mirror.py``) over
HTTP through the real ``huggingface_hub`` session. Each failure must be one
:class:`UserError` line (exit 2 through the CLI), nothing may be written
outside the import-model cache, and no command may outlive its deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from import_model import cli
from import_model.errors import UserError
from import_model.source import hub as hub_module
from import_model.source import load_checkpoint, load_config, open_source
from import_model.source.base import MAX_SMALL_FILE_BYTES
from import_model.source.hub import HubSource, check_revision, is_safe_repo_path
from tests.support.hub_mirror import Fault, VirtualFile
from tests.support.mirror_fixtures import HubEnv

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16, "vocab_size": 32}
#: What the kernel may buffer between the mirror and a client that stopped reading (socket buffers on loopback).
SLACK = 8 * 1024 * 1024
#: Upper bound for a 1-1.5 s deadline to have ended a command: loose, so a loaded machine does not fail it, and far
#: below what each server behaviour here takes without the deadline (tens of seconds or more).
GENEROUS_S = 10.0
#: Read timeout of the trickled-header tests: never reached, since every header byte arrives well within it.
SLOW_HEADER_TIMEOUT_S = 20.0


@pytest.fixture
def repo_files(tmp_path: Path) -> dict[str, bytes]:
    """A tiny real checkpoint as ``{name: bytes}``: config, one safetensors file, a card."""
    shard = tmp_path / "model.safetensors"
    save_file({"model.norm.weight": np.ones((16,), dtype=np.float32)}, str(shard))
    return {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": shard.read_bytes(), "README.md": b"# hi\n"}


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "\x1b" not in message and "Traceback" not in message, message


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# -- commit shas that would be paths ------------------------------------------------------

BAD_SHAS = {
    "climbs": "../../../../escaped",
    "climbs-deep": "../" * 12 + "tmp/escaped",
    "uppercase": "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
    "short": "deadbeef",
    "empty": "",
    "escape-code": "0" * 39 + "\x1b[31m",
    "newline": "0" * 40 + "\n../x",
    "trailing-newline": "0" * 40 + "\n",
    "long": "a" * 5000,
}


@pytest.mark.parametrize("kind", sorted(BAD_SHAS))
def test_bad_commit_sha_is_refused(hub_env: HubEnv, repo_files: dict[str, bytes], kind: str) -> None:
    root = hub_env.import_model_cache.parent
    hub_env.mirror.add_repo("org/evil", repo_files, sha=BAD_SHAS[kind])
    before = _files_under(root.parent)
    with pytest.raises(UserError, match="gave commit sha .*not 40 lowercase hex digits") as info:
        open_source("org/evil").files()
    message = str(info.value)
    _one_line(message)
    assert hub_env.endpoint in message and len(message) < 400
    assert not (root / "escaped").exists()
    assert _files_under(root.parent) == before  # nothing written anywhere, the cache included


def test_absolute_commit_sha_writes_nothing_there(hub_env: HubEnv, repo_files: dict[str, bytes], tmp_path: Path) -> None:
    target = tmp_path / "abs-escape"
    hub_env.mirror.add_repo("org/evil", repo_files, sha=str(target))
    with pytest.raises(UserError, match="commit sha"):
        load_config(open_source("org/evil"))
    assert not target.exists()
    assert not list(hub_env.import_model_cache.rglob("files.json"))


def test_cli_bad_sha_exits_2_with_one_line(
    hub_env: HubEnv, repo_files: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    root = hub_env.import_model_cache.parent
    hub_env.mirror.add_repo("org/evil", repo_files, sha="../../../../escaped")
    assert cli.main(["list-keys", "org/evil"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "commit sha" in lines[0] and "'../../../../escaped'" in lines[0], captured.err
    assert captured.out == ""
    assert not (root / "escaped").exists()


def test_cached_ref_with_a_bad_sha_is_not_trusted_offline(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    source = open_source("org/tiny")
    assert load_config(source) == CONFIG
    (ref,) = hub_env.import_model_cache.glob("hub/*/org--tiny/refs/main")
    ref.write_text("../../../../escaped")
    hub_env.offline()
    with pytest.raises(UserError, match="never inspected online"):
        open_source("org/tiny").files()


# -- file names that would be paths ------------------------------------------------------

HOSTILE_NAMES = [
    "../evil.json",
    "/etc/evil.json",
    "dir/../../up.json",
    "./dot.json",
    "dir//double.json",
    "trailing/",
    "back\\slash.json",
    "esc\x1b[31mred.json",
    "nul\x00.json",
    "bidi\u202egnp.json",
    "x" * 2000,
    "part/" + "y" * 300,
]


def test_hostile_sibling_names_are_left_out(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    files = {**repo_files, **dict.fromkeys(HOSTILE_NAMES, b"{}"), "sub/dir/ok.json": b"{}"}
    hub_env.mirror.add_repo("org/names", files)
    source = open_source("org/names")
    assert source.files() == ["README.md", "config.json", "model.safetensors", "sub/dir/ok.json"]
    assert isinstance(source, HubSource) and len(source.skipped_files) == len(HOSTILE_NAMES)
    assert all("\x1b" not in n and "\x00" not in n and "\u202e" not in n for n in source.skipped_files)
    assert source.read_bytes("../evil.json") is None  # not in the listing, so never fetched
    assert load_checkpoint(source).parameter_count == 16
    (listing,) = hub_env.import_model_cache.glob("hub/*/org--names/*/files.json")
    assert json.loads(listing.read_text()) == source.files()
    hub_env.mirror.wait_idle()
    assert not any("evil" in r.path or "esc" in r.path for r in hub_env.mirror.requests)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_is_safe_repo_path_refuses(name: str) -> None:
    assert not is_safe_repo_path(name)


@pytest.mark.parametrize("name", ["config.json", "a/b/c.safetensors", "..hidden", "dir/.gitattributes", "ü.json"])
def test_is_safe_repo_path_accepts(name: str) -> None:
    assert is_safe_repo_path(name)


# -- revisions -------------------------------------------------------------------------------

BAD_REVISIONS = ["..", "../../x", "main/../x", "/etc", "-rf", ".hidden", "a b", "a\x1bb", "x" * 300, "ref\\x", "a:b", "a@{1}"]


@pytest.mark.parametrize("revision", BAD_REVISIONS)
def test_bad_revision_is_refused(hub_env: HubEnv, revision: str) -> None:
    with pytest.raises(UserError, match="--revision .* is not a branch, tag or commit name") as info:
        open_source("org/tiny", revision=revision)
    _one_line(str(info.value))
    assert len(str(info.value)) < 400
    assert hub_env.mirror.count_requests() == 0


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "feature/x-y_z", "0123456789abcdef" * 2 + "01234567"])
def test_good_revision_shapes(revision: str) -> None:
    assert check_revision(revision) == revision


def test_cli_revision_dotdot_exits_2(hub_env: HubEnv, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", "org/tiny", "--revision", ".."]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--revision '..' is not a branch" in lines[0], lines


@pytest.mark.parametrize("repo_id", ["org/tiny\n", "../x", "org/..", "org/a/b", "-org/x"])
def test_bad_repo_id_is_refused_by_the_source_itself(hub_env: HubEnv, repo_id: str) -> None:
    with pytest.raises(UserError, match="not a hub ID") as info:
        HubSource(repo_id)
    _one_line(str(info.value))


# -- cache containment ------------------------------------------------------------------------


def test_cache_link_leading_outside_is_refused(hub_env: HubEnv, repo_files: dict[str, bytes], tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (hub_env.import_model_cache / "hub").symlink_to(outside, target_is_directory=True)
    hub_env.mirror.add_repo("org/tiny", repo_files)
    with pytest.raises(UserError, match="outside the import-model cache"):
        open_source("org/tiny").files()
    assert not any(outside.iterdir())


def test_endpoint_host_cannot_climb_out_of_the_cache(hub_env: HubEnv) -> None:
    from huggingface_hub import constants

    hub_env.monkeypatch.setattr(constants, "ENDPOINT", "http://../../..")
    meta = HubSource("org/tiny")._meta_dir()
    assert meta.is_relative_to(hub_env.import_model_cache.resolve())


def test_fifo_in_the_cache_does_not_hang(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/tiny", repo_files)
    assert load_config(open_source("org/tiny")) == CONFIG
    (cached,) = hub_env.import_model_cache.glob("hub/*/org--tiny/*/files/config.json")
    cached.unlink()
    os.mkfifo(cached)
    hub_env.offline()
    with pytest.raises(UserError, match="config.json is not cached"):
        load_config(open_source("org/tiny"))
    hub_env.offline(False)
    assert load_config(open_source("org/tiny")) == CONFIG  # a cache miss: fetched again, the FIFO replaced
    assert cached.is_file()


# -- oversized bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["README.md", "config.json"])
def test_oversized_small_file_with_declared_length(hub_env: HubEnv, repo_files: dict[str, bytes], name: str) -> None:
    big = VirtualFile(head=b"{" if name.endswith(".json") else b"# big\n", size=4 * MAX_SMALL_FILE_BYTES)
    hub_env.mirror.add_repo("org/big", {**repo_files, name: big})
    with pytest.raises(UserError, match=f"{name} is more than {MAX_SMALL_FILE_BYTES} bytes, too large") as info:
        open_source("org/big").read_bytes(name)
    _one_line(str(info.value))
    assert hub_env.mirror.wait_idle(10)
    # The declared length was enough: the body was never read, only kernel buffers filled.
    assert hub_env.mirror.bytes_sent_for(f"org/big/{name}") < SLACK
    assert not list(hub_env.import_model_cache.glob(f"hub/*/org--big/*/files/{name}"))


def test_oversized_small_file_without_length_is_cut_while_streaming(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    big = VirtualFile(head=b"# big\n", size=4 * MAX_SMALL_FILE_BYTES)
    hub_env.mirror.add_repo("org/big", {**repo_files, "README.md": big})
    fault = hub_env.mirror.inject(Fault.chunked("*/README.md"))
    source = open_source("org/big")
    with pytest.raises(UserError, match="README.md is more than .* too large for a metadata file"):
        source.read_bytes("README.md")
    assert fault.hits == 1
    assert hub_env.mirror.wait_idle(10)
    sent = hub_env.mirror.bytes_sent_for("org/big/README.md")
    assert MAX_SMALL_FILE_BYTES < sent <= MAX_SMALL_FILE_BYTES + SLACK < big.size
    assert isinstance(source, HubSource) and source.bytes_fetched <= MAX_SMALL_FILE_BYTES + 1024 * 1024


def test_small_cap_holds_exactly(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    """With a 4 KiB cap: 4 KiB is read, 4 KiB + 1 is refused, whether the length is declared or not."""
    hub_env.monkeypatch.setattr(hub_module, "MAX_SMALL_FILE_BYTES", 4096)
    sizes = {"exact.txt": 4096, "over.txt": 4097, "chunked-exact.txt": 4096, "chunked-over.txt": 4097}
    hub_env.mirror.add_repo("org/cap", {**repo_files, **{name: b"a" * size for name, size in sizes.items()}})
    hub_env.mirror.inject(Fault.chunked("*/chunked-*"))
    source = open_source("org/cap")
    assert source.read_bytes("exact.txt") == b"a" * 4096
    assert source.read_bytes("chunked-exact.txt") == b"a" * 4096
    for name in ("over.txt", "chunked-over.txt"):
        with pytest.raises(UserError, match=f"{name} is more than 4096 bytes"):
            source.read_bytes(name)


def test_oversized_listing_is_cut_while_streaming(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/big", repo_files)
    fault = hub_env.mirror.inject(Fault.chunked("api/*", pad_bytes=hub_module.MAX_LISTING_BYTES + 1024 * 1024))
    with pytest.raises(UserError, match="file listing .* is over 16777216 bytes"):
        open_source("org/big").files()
    assert fault.hits == 1  # a refusal, not a transient failure: no retry
    assert hub_env.mirror.wait_idle(10)
    assert hub_env.mirror.bytes_sent_for("api/models/org/big") <= hub_module.MAX_LISTING_BYTES + SLACK


def test_padded_listing_under_the_cap_is_fine(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/pad", repo_files)
    hub_env.mirror.inject(Fault.chunked("api/*", pad_bytes=200_000))
    assert open_source("org/pad").files() == ["README.md", "config.json", "model.safetensors"]


# -- the deadline ----------------------------------------------------------------------------------


def _ends_at_the_deadline(fault: Fault) -> None:
    """Reading org/slow's config and checkpoint fails with the 1.5 s deadline's one line, after it and well before
    the server's behaviour would have ended the read by itself."""
    started = time.monotonic()
    with pytest.raises(UserError, match=r"exceeded the 1\.5 s deadline \(IMPORT_MODEL_HUB_DEADLINE\)") as info:
        source = open_source("org/slow")
        load_config(source), load_checkpoint(source)
    elapsed = time.monotonic() - started
    _one_line(str(info.value))
    assert fault.hits == 1 and 1.4 < elapsed < GENEROUS_S, elapsed


@pytest.mark.parametrize("pattern", ["api/*", "*/config.json", "*.safetensors"])
def test_trickling_server_hits_the_deadline(hub_env: HubEnv, repo_files: dict[str, bytes], pattern: str) -> None:
    hub_env.mirror.add_repo("org/slow", repo_files)
    hub_env.fast_failures(retries=2, timeout_s=5)
    hub_env.deadline(1.5)
    fault = hub_env.mirror.inject(Fault.trickle(pattern, bytes_per_second=4))  # the config alone takes 25 s
    _ends_at_the_deadline(fault)


@pytest.mark.parametrize("pattern", ["api/*", "*/config.json", "*.safetensors"])
def test_trickled_response_headers_hit_the_deadline(hub_env: HubEnv, repo_files: dict[str, bytes], pattern: str) -> None:
    """One header byte every 0.25 s never trips the per-read timeout; the deadline must still end the request.

    Without a deadline on the wait for headers this takes 200 bytes x 0.25 s = 50 s; no read ever reaches the 20 s
    timeout.
    """
    hub_env.mirror.add_repo("org/slow", repo_files)
    hub_env.fast_failures(retries=2, timeout_s=SLOW_HEADER_TIMEOUT_S)
    hub_env.deadline(1.5)
    fault = hub_env.mirror.inject(Fault.slow_headers(pattern, seconds_per_byte=0.25, header_bytes=200))
    _ends_at_the_deadline(fault)


def test_cli_inspect_with_trickled_headers_exits_2_at_the_deadline(
    hub_env: HubEnv, repo_files: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    hub_env.mirror.add_repo("org/slow", repo_files)
    hub_env.fast_failures(retries=2, timeout_s=SLOW_HEADER_TIMEOUT_S)
    hub_env.deadline(1.5)
    hub_env.mirror.inject(Fault.slow_headers("api/*", seconds_per_byte=0.25, header_bytes=200))
    started = time.monotonic()
    assert cli.main(["inspect", "org/slow"]) == 2
    elapsed = time.monotonic() - started
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "exceeded the 1.5 s deadline (IMPORT_MODEL_HUB_DEADLINE)" in lines[0], lines
    assert elapsed < GENEROUS_S, elapsed


def test_deadline_alarm_keeps_an_earlier_alarm_and_restores_a_later_one(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    """The hub's timer never clobbers one the caller set: its handler and remaining time come back."""
    hub_env.mirror.add_repo("org/tiny", repo_files)
    fired: list[int] = []

    def theirs(signum: int, _frame: object) -> None:
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, theirs)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100.0)
        assert load_config(open_source("org/tiny")) == CONFIG  # 60 s deadline: ours fires first, then theirs is back
        assert signal.getsignal(signal.SIGALRM) is theirs
        assert 90.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100.0
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # fires before our 60 s one: ours is skipped, theirs kept
        assert load_config(open_source("org/tiny")) == CONFIG
        assert signal.getsignal(signal.SIGALRM) is theirs
        time.sleep(0.6)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0


def test_outside_the_main_thread_requests_still_work(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    """No timer can be armed off the main thread; the old per-read checks apply and nothing breaks."""
    hub_env.mirror.add_repo("org/tiny", repo_files)
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(load_config(open_source("org/tiny"))))
    worker.start()
    worker.join(30)
    assert result == [CONFIG]
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0


def test_slow_answer_is_cut_at_the_deadline_not_the_timeout(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/slow", repo_files)
    hub_env.fast_failures(retries=3, timeout_s=30)
    hub_env.deadline(1.0)
    hub_env.mirror.inject(Fault.slow("*/config.json", seconds=20))
    started = time.monotonic()
    with pytest.raises(UserError, match="exceeded the 1 s deadline"):
        load_config(open_source("org/slow"))
    assert time.monotonic() - started < GENEROUS_S


def test_retries_stop_at_the_deadline(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/flaky", repo_files)
    hub_env.fast_failures(retries=1000, timeout_s=5)
    hub_env.deadline(1.5)
    fault = hub_env.mirror.inject(Fault.server_error("api/*", status=503))
    started = time.monotonic()
    with pytest.raises(UserError, match="exceeded the 1.5 s deadline"):
        open_source("org/flaky").files()
    assert time.monotonic() - started < GENEROUS_S and 2 <= fault.hits < 10


def test_slow_but_steady_within_the_deadline_succeeds(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/steady", repo_files)
    hub_env.deadline(10)
    hub_env.mirror.inject(Fault.trickle("*/config.json", bytes_per_second=400))
    assert load_config(open_source("org/steady")) == CONFIG


# -- redirects ---------------------------------------------------------------------------------------


def test_redirect_is_followed_and_a_loop_refused(hub_env: HubEnv, repo_files: dict[str, bytes]) -> None:
    hub_env.mirror.add_repo("org/moved", repo_files)
    once = hub_env.mirror.inject(Fault.redirect("*/config.json", times=1))
    assert load_config(open_source("org/moved")) == CONFIG and once.hits == 1
    hub_env.mirror.clear_faults()
    hub_env.mirror.inject(Fault.redirect("*/README.md"))
    with pytest.raises(UserError, match=f"more than {hub_module.MAX_REDIRECTS} redirects"):
        open_source("org/moved").read_bytes("README.md")


# -- limits from the environment -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMPORT_MODEL_HUB_RETRIES", "three"),
        ("IMPORT_MODEL_HUB_RETRIES", "-1"),
        ("IMPORT_MODEL_HUB_RETRIES", "1.5"),
        ("IMPORT_MODEL_HUB_RETRIES", "9" * 400),
        ("IMPORT_MODEL_HUB_TIMEOUT", "abc"),
        ("IMPORT_MODEL_HUB_TIMEOUT", "0"),
        ("IMPORT_MODEL_HUB_TIMEOUT", "-2"),
        ("IMPORT_MODEL_HUB_TIMEOUT", "nan"),
        ("IMPORT_MODEL_HUB_DEADLINE", "inf"),
        ("IMPORT_MODEL_HUB_DEADLINE", "soon\x1b[2J"),
    ],
)
def test_bad_limit_variable_is_one_line(hub_env: HubEnv, name: str, value: str) -> None:
    hub_env.use_env_limits()
    hub_env.monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=f"{name}=.* is not a") as info:
        open_source("org/tiny")
    _one_line(str(info.value))
    assert len(str(info.value)) < 300


def test_limit_variables_are_read_when_used(hub_env: HubEnv) -> None:
    hub_env.use_env_limits()
    hub_env.monkeypatch.setenv("IMPORT_MODEL_HUB_RETRIES", "0")
    hub_env.monkeypatch.setenv("IMPORT_MODEL_HUB_TIMEOUT", "2.5")
    hub_env.monkeypatch.setenv("IMPORT_MODEL_HUB_DEADLINE", "30")
    assert (hub_module.hub_retries(), hub_module.hub_timeout_s(), hub_module.hub_deadline_s()) == (0, 2.5, 30.0)
    for name in ("IMPORT_MODEL_HUB_RETRIES", "IMPORT_MODEL_HUB_TIMEOUT", "IMPORT_MODEL_HUB_DEADLINE"):
        hub_env.monkeypatch.delenv(name)
    assert (hub_module.hub_retries(), hub_module.hub_timeout_s(), hub_module.hub_deadline_s()) == (3, 20.0, 600.0)


def test_bad_limit_variable_in_a_fresh_process(hub_env: HubEnv) -> None:
    """The import itself must not crash: the variable is read when a hub model is opened."""
    env = {**hub_env.subprocess_env(), "IMPORT_MODEL_HUB_RETRIES": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "import_model.cli", "list-keys", "org/tiny"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "IMPORT_MODEL_HUB_RETRIES='lots' is not a whole number" in lines[0], result.stderr
