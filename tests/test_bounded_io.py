"""Bounded reads and output roots: devices, FIFOs and huge files are refused in one line, never read.

Every CLI case runs in a child process under a timeout, so a read that hangs
on a FIFO or streams ``/dev/zero`` fails the test instead of stalling the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from import_model import safe_io
from import_model.errors import UserError
from import_model.procs import child_env
from import_model.safe_io import FileRefused, check_output_root, read_bounded, read_bounded_text
from import_model.source.base import MAX_SMALL_FILE_BYTES
from import_model.verify.twin import read_twin_info
from tests.support.families import family_twin_dir

#: Seconds any refusal may take in a child (the interpreter, and for `plan` the model, load first).
CHILD_TIMEOUT = 120


def cli(*argv: str, timeout: float = CHILD_TIMEOUT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "import_model", *argv], capture_output=True, text=True,
                          timeout=timeout, env=child_env(**env), stdin=subprocess.DEVNULL)


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Turn a read that blocks past ``seconds`` into a failure instead of a hung test."""

    def expired(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------------ read_bounded


def test_regular_files_and_links_to_them_are_read(tmp_path: Path) -> None:
    path = tmp_path / "PORT.md"
    path.write_bytes(b"x" * 100)
    (tmp_path / "link.md").symlink_to(path)
    assert read_bounded(path, 100, "tracking document") == b"x" * 100
    assert read_bounded(tmp_path / "link.md", 100, "tracking document") == b"x" * 100
    assert read_bounded_text(path, 100, "tracking document") == "x" * 100


def test_a_file_over_its_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "PORT.md"
    path.write_bytes(b"x" * 101)
    with pytest.raises(FileRefused, match="over the 100 bytes cap") as caught:
        read_bounded(path, 100, "tracking document")
    assert str(path) in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_devices_and_links_to_them_are_refused(tmp_path: Path, device: str) -> None:
    (tmp_path / "PORT.md").symlink_to(device)
    with deadline(10):
        for path in (Path(device), tmp_path / "PORT.md"):
            with pytest.raises(FileRefused, match="character device"):
                read_bounded(path, safe_io.MAX_DOCUMENT_BYTES, "tracking document")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "PORT.md"
    os.mkfifo(fifo)
    with deadline(10), pytest.raises(FileRefused, match="FIFO"):
        read_bounded(fifo, 1000, "tracking document")


def test_a_fifo_swapped_in_after_the_first_look_is_refused_without_blocking(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The first look sees a regular file; by the open it is a FIFO: the open must not block, the second look refuses."""
    fifo, decoy = tmp_path / "PORT.md", tmp_path / "decoy.md"
    os.mkfifo(fifo)
    decoy.write_text("fine")
    real_stat = os.stat

    def stale_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        return real_stat(decoy if Path(str(path)) == fifo else path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(safe_io.os, "stat", stale_stat)
    with deadline(10), pytest.raises(FileRefused, match="FIFO"):
        read_bounded(fifo, 1000, "tracking document")


def test_a_file_larger_than_it_claims_is_cut_at_the_cap() -> None:
    status = Path("/proc/self/status")
    assert status.stat().st_size == 0  # /proc files claim nothing and hold more
    with pytest.raises(FileRefused, match="larger than it claimed"):
        read_bounded(status, 16, "status")
    assert b"Name:" in read_bounded(status, safe_io.MAX_DOCUMENT_BYTES, "status")


def test_directories_missing_files_and_bad_text_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match="directory"):
        read_bounded(tmp_path, 10, "tracking document")
    with pytest.raises(FileRefused, match="does not exist") as caught:
        read_bounded(tmp_path / "absent", 10, "tracking document")
    assert caught.value.missing
    (tmp_path / "latin1.md").write_bytes(b"caf\xe9")
    with pytest.raises(FileRefused, match="not UTF-8"):
        read_bounded_text(tmp_path / "latin1.md", 10, "tracking document")
    assert read_bounded_text(tmp_path / "latin1.md", 10, "port file", errors="replace") == "caf\ufffd"
    assert isinstance(caught.value, UserError) and caught.value.exit_code == 2


def test_limits_are_a_few_mib() -> None:
    assert safe_io.MAX_DOCUMENT_BYTES == 4 * safe_io.MIB
    assert safe_io.MAX_PORT_FILE_BYTES == 8 * safe_io.MIB
    assert MAX_SMALL_FILE_BYTES == 32 * safe_io.MIB  # a checkpoint's config.json, read as a local source's file
    assert safe_io.MAX_MARKER_BYTES == 1 * safe_io.MIB


def test_a_twin_marker_that_is_a_fifo_is_not_a_twin(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "twin.json")
    with deadline(10):
        assert read_twin_info(tmp_path) is None


# ------------------------------------------------------------------------------------------ output roots


def test_root_and_home_are_refused_as_output_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "home-link").symlink_to(home, target_is_directory=True)
    monkeypatch.setenv("HOME", str(home))
    for path in ("/", "~", str(home), str(home) + "/", str(tmp_path / "home-link")):
        with pytest.raises(UserError, match="root|home directory"):
            check_output_root(path, "--output")
    assert check_output_root(home / "ports", "--output") == home / "ports"


def test_an_output_overlapping_the_source_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    for path in (source, source / "twin", tmp_path):
        with pytest.raises(UserError, match="overlap the source"):
            check_output_root(path, "--output", source=source)
    assert check_output_root(tmp_path / "twin", "--output", source=source) == tmp_path / "twin"


# ------------------------------------------------------------------------------------------ through the CLI


def test_plan_markdown_onto_a_device_is_refused() -> None:
    result = cli("plan", str(family_twin_dir("helium")), "--markdown", "/dev/zero")
    assert_one_line_refusal(result, "/dev/zero", "character device")


def test_plan_markdown_onto_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "PORT.md"
    os.mkfifo(fifo)
    result = cli("plan", str(family_twin_dir("helium")), "--markdown", str(fifo))
    assert_one_line_refusal(result, "FIFO")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # left as it was


def test_plan_markdown_through_a_link_to_a_device_is_refused(tmp_path: Path) -> None:
    (tmp_path / "PORT.md").symlink_to("/dev/zero")
    result = cli("plan", str(family_twin_dir("helium")), "--markdown", str(tmp_path / "PORT.md"))
    assert_one_line_refusal(result)
    assert (tmp_path / "PORT.md").is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "device-link"])
def test_audit_refuses_a_port_file_that_is_not_regular(tmp_path: Path, kind: str) -> None:
    port = tmp_path / "qwen9"
    port.mkdir()
    (port / "model.py").write_text('"""The port."""\n')
    if kind == "fifo":
        os.mkfifo(port / "graph.py")
    else:
        (port / "graph.py").symlink_to("/dev/zero")
    result = cli("audit", str(port), timeout=60)
    assert_one_line_refusal(result, "graph.py")


@pytest.mark.parametrize(("name", "command"), [("config.json", "inspect"), ("model.safetensors", "list-keys")])
def test_a_local_checkpoint_file_that_is_a_fifo_is_refused(tmp_path: Path, name: str, command: str) -> None:
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(family_twin_dir("helium"), checkpoint, ignore=shutil.ignore_patterns(name))
    os.mkfifo(checkpoint / name)
    result = cli(command, str(checkpoint), timeout=60)
    assert_one_line_refusal(result, name, "FIFO")


def test_twin_force_onto_a_directory_whose_marker_is_a_fifo_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "twin"
    out.mkdir()
    (out / "config.json").write_text("{}")
    os.mkfifo(out / "twin.json")
    result = cli("twin", str(family_twin_dir("helium")), "--output", str(out), "--force")
    assert_one_line_refusal(result, "twin.json", "FIFO")
    assert (out / "config.json").read_text() == "{}"


# ------------------------------------------------------------------------------------------ the tool's own files


def test_a_directory_keeps_its_identity_when_renamed_and_a_copy_has_another(tmp_path: Path) -> None:
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "a.txt").write_text("a")
    recorded = safe_io.directory_identity(staging)
    staging.rename(tmp_path / "final")
    assert safe_io.is_written_here(recorded, tmp_path / "final")
    shutil.copytree(tmp_path / "final", tmp_path / "copy")
    assert not safe_io.is_written_here(recorded, tmp_path / "copy")
    for bad in (None, "0:0", [True, 1], [recorded[0]], [*recorded, 0], [float(recorded[0]), recorded[1]]):
        assert not safe_io.is_written_here(bad, tmp_path / "final"), bad
    assert not safe_io.is_written_here(recorded, tmp_path / "gone")


def test_foreign_entries_names_all_that_is_not_the_tools_own(tmp_path: Path) -> None:
    (tmp_path / "own.py").write_text("x")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "inner.py").write_text("x")
    (tmp_path / "pkg" / "extra.txt").write_text("mine")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link.py").symlink_to(tmp_path / "own.py")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "own.cpython-311.pyc").write_bytes(b"")
    own = {"own.py", "pkg/inner.py", "link.py", "pipe"}
    found = safe_io.foreign_entries(tmp_path, own)
    assert found == ["__pycache__", "empty", "link.py", "pipe", "pkg/extra.txt"]

    def bytecode(relative: str) -> bool:
        return relative == "__pycache__/" or relative.startswith("__pycache__/") and relative.endswith(".pyc")

    assert safe_io.foreign_entries(tmp_path, own, bytecode) == ["empty", "link.py", "pipe", "pkg/extra.txt"]
    (tmp_path / "__pycache__" / "notes.txt").write_text("mine")
    assert "__pycache__/notes.txt" in safe_io.foreign_entries(tmp_path, own, bytecode)


def test_file_sha256_streams_a_regular_file_and_refuses_a_fifo(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * safe_io.MIB + 5)
    (tmp_path / "blob").write_bytes(data)
    assert safe_io.file_sha256(tmp_path / "blob", "blob") == (len(data), hashlib.sha256(data).hexdigest())
    os.mkfifo(tmp_path / "pipe")
    with deadline(10), pytest.raises(FileRefused, match="FIFO"):
        safe_io.file_sha256(tmp_path / "pipe", "twin file")


# ------------------------------------------------------------------------------------------ audit is linear


def _donor_comment_blocks(lines: int) -> str:
    """A module of consecutive comment lines, each naming the donor and claiming behaviours."""
    body = [f"# Llama 3 model with RMSNorm and QK-norm on a single GPU, line {i}." for i in range(lines)]
    return "\n".join(body) + "\nx = 1\n"


def test_audit_of_5000_lines_of_donor_comments_finishes(tmp_path: Path) -> None:
    """Quadratic code took minutes here (165 s in the probe); linear code takes well under a second."""
    port = tmp_path / "qwen9"
    port.mkdir()
    (port / "big.py").write_text(_donor_comment_blocks(5000))
    result = cli("audit", str(port), "--json", timeout=60)
    assert result.returncode == 1, result.stderr  # every line is a Stale or a Lie
    payload = json.loads(result.stdout)
    assert payload["counts"] == {"Stale": 5000, "Lie": 15000}
    assert payload["hits"][-1]["line"] == 5000 and payload["hits"][-1]["text"].endswith("line 4999.")


@pytest.mark.parametrize("command", ["port", "scaffold"])
def test_port_writers_refuse_root_and_home_before_reading_the_model(tmp_path: Path, command: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    extra = ["--start-from", "llama3"] if command == "scaffold" else ["--no-verify"]
    for out_dir in ("/", "~"):
        result = cli(command, "org/not-read", *extra, "--output-dir", out_dir, "--force", timeout=60,
                     HOME=str(home), HF_HUB_OFFLINE="1")
        assert_one_line_refusal(result, "--output-dir")
    assert list(home.iterdir()) == []
