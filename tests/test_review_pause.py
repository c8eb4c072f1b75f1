"""The plan-and-veto pause of ``import-model port``: a terminal is shown the plan and asked; nothing else waits.

On a pseudo-terminal ``port`` stops after the plan with the default-plan paragraph
and the delta list and waits for a yes; "n" stops it with exit 2, one error
line and nothing written. ``--yes``, or no terminal (scripts, CI, the test
suite itself), goes on and says so in one line. No test here compiles: the
pseudo-terminal run stops before the port is written, and the in-process runs
stop where ``write_port`` is called.
"""

from __future__ import annotations

import argparse
import io
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from import_model import cli
from import_model.commands import port_run
from import_model.errors import UserError
from import_model.procs import child_env
from tests.support.families import family_twin_dir

PROMPT = b"Write the port with this plan? [y/N]"


class _Reached(BaseException):
    """Raised where the port would be written: the run went past the review."""


def _read_until(fd: int, marker: bytes, seconds: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_port_on_a_terminal_waits_at_the_plan_and_a_no_writes_nothing(tmp_path: Path) -> None:
    model = family_twin_dir("helium")
    out_dir = tmp_path / "ports"
    main, child = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "import_model", "port", str(model), "--output-dir", str(out_dir),
                             "--no-verify"], stdin=child, stdout=child, stderr=child, env=child_env(), close_fds=True)
    os.close(child)
    try:
        shown = _read_until(main, PROMPT, 180)
        assert PROMPT in shown, shown.decode(errors="replace")[-2000:]
        text = shown.decode(errors="replace")
        assert "Veto any of these" in text, "the default-plan paragraph is shown"
        assert "rotary_style" in text, "the delta list is shown"
        time.sleep(1.0)
        assert proc.poll() is None, "port went on without an answer"
        assert not out_dir.exists()
        os.write(main, b"n\n")
        rest = _read_until(main, b"\x00never", 60)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    errors = [line for line in rest.decode(errors="replace").splitlines() if "error:" in line]
    assert code == 2
    assert len(errors) == 1 and "plan vetoed" in errors[0]
    assert not out_dir.exists(), "a vetoed plan writes nothing"


def _spy_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stop the run where the port would be written, and keep the run record the review saw."""
    seen: dict[str, Any] = {}
    real_review = port_run.review_plan

    def review(plan: Any, run: port_run.PortRun, **kwargs: Any) -> bool:
        seen["run"] = run
        return real_review(plan, run, **kwargs)

    def write_port(*_args: Any, **_kwargs: Any) -> None:
        raise _Reached

    monkeypatch.setattr(port_run, "review_plan", review)
    monkeypatch.setattr("import_model.port.writer.write_port", write_port)
    return seen


def _port_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["port", str(family_twin_dir("helium")), "--output-dir",
                                          str(tmp_path / "ports"), "--no-verify", *extra])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Unanswered(_Terminal):
    def readline(self, *_args: Any) -> str:
        raise AssertionError("port asked although --yes was given")


def test_port_with_yes_goes_on_without_asking_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    seen = _spy_run(monkeypatch)
    monkeypatch.setattr(port_run, "_is_terminal", lambda _stream: True)
    monkeypatch.setattr(sys, "stdin", _Unanswered())
    with pytest.raises(_Reached):
        port_run.cmd_port(_port_args(tmp_path, "--yes"))
    assert seen["run"].steps[-1] == {"step": "plan review", "status": "accepted", "detail": "--yes"}
    err = capsys.readouterr().err
    assert "Write the port" not in err
    assert len([line for line in err.splitlines() if "--yes" in line]) == 1


def test_port_without_a_terminal_goes_on_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    seen = _spy_run(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))  # not a terminal: never read, so the "n" does not count
    with pytest.raises(_Reached):
        port_run.cmd_port(_port_args(tmp_path))
    assert seen["run"].steps[-1]["status"] == "not asked"
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "not waiting for a yes" in line]) == 1
    assert sys.stdin.read() == "n\n"


@pytest.mark.parametrize(("answer", "goes_on"), [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False),
                                                 ("", False)])
def test_the_terminal_answer_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str,
                                     goes_on: bool) -> None:
    seen = _spy_run(monkeypatch)
    monkeypatch.setattr(port_run, "_is_terminal", lambda _stream: True)
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    if goes_on:
        with pytest.raises(_Reached):
            port_run.cmd_port(_port_args(tmp_path))
        assert seen["run"].steps[-1] == {"step": "plan review", "status": "accepted", "detail": "yes at the prompt"}
    else:
        with pytest.raises(UserError, match="plan vetoed") as refused:
            port_run.cmd_port(_port_args(tmp_path))
        assert refused.value.exit_code == 2
    assert not (tmp_path / "ports").exists()


def test_plan_writes_the_paragraph_and_the_review_note_for_a_reviewer(tmp_path: Path) -> None:
    document = tmp_path / "PORT.md"
    assert cli.main(["plan", str(family_twin_dir("helium")), "--markdown", str(document)]) == 0
    text = document.read_text()
    assert "Veto any of these before the scaffold is written." in text
    assert "**Review:**" in text and "`port --yes`" in text


def test_a_verify_child_killed_by_a_signal_is_named() -> None:
    from import_model.commands.port_run import _exit_text

    assert _exit_text(2) == "exit 2"
    assert _exit_text(-9) == "killed by SIGKILL" and _exit_text(-11) == "killed by SIGSEGV"
