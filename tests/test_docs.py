"""The guide is tested: runnable shell blocks run, relative links resolve, and every command and flag exists.

A fenced block whose info string is ``sh runnable`` is run with bash from the
repository root (``set -e``, the virtualenv's ``bin`` first on PATH) after the
tiny twins it names under ``.cache/test-twins`` are built. Its commands write
under ``build/docs`` only. Other blocks are illustrations and are only
checked for commands and flags.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from import_model.cli import build_parser
from import_model.procs import child_env
from tests.support.families import FAMILY_CONFIGS, family_twin_dir

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "SKILL.md", REPO / "README.md", *sorted((REPO / "references").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"import-model\s+([a-z][a-z-]*)((?:[^\n`|]*))")


def _blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(path.read_text())]


def _runnable() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for index, (info, body) in enumerate(_blocks(path)):
            if info == "sh runnable":
                found.append((f"{path.relative_to(REPO)}#{index}", body))
    return found


def _subcommands() -> dict[str, set[str]]:
    parser = build_parser()
    actions = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: {flag for action in sub._actions for flag in action.option_strings}
            for name, sub in actions.choices.items()}


def test_docs_exist() -> None:
    assert (REPO / "SKILL.md").is_file()
    assert len(DOCS) >= 15, "SKILL.md, README.md and a reference per activity"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path: Path) -> None:
    text = FENCE.sub("", path.read_text())
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.exists(), f"{path.name}: broken link {target}"


def _code(text: str) -> str:
    """Fenced blocks and inline code spans: where the docs show commands."""
    fenced = [body for _info, body in (m.groups() for m in FENCE.finditer(text))]
    spans = re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    return "\n".join(fenced + spans)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_and_flag_mentioned_exists(path: Path) -> None:
    commands = _subcommands()
    for name, rest in COMMAND.findall(_code(path.read_text())):
        if name not in commands:
            pytest.fail(f"{path.name}: `import-model {name}` is not a command")
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
            assert flag in commands[name] or flag == "--help", f"{path.name}: `import-model {name} {flag}` is unknown"


@pytest.mark.slow
@pytest.mark.parametrize(("where", "body"), _runnable(), ids=[w for w, _ in _runnable()])
def test_runnable_block_runs(where: str, body: str) -> None:
    for family in sorted(set(re.findall(r"\.cache/test-twins/(\w+)", body))):
        assert family in FAMILY_CONFIGS, f"{where}: no twin family {family}"
        family_twin_dir(family)
    bin_dir = str(Path(sys.executable).parent)
    env = child_env(PATH=f"{bin_dir}:{child_env().get('PATH', '')}", MAX_SERVE_DISABLE_TELEMETRY="1")
    (REPO / "build" / "docs").mkdir(parents=True, exist_ok=True)
    script = "set -e\n" + body
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, f"{where} failed:\n{shlex.quote(body)}\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"
    assert "Traceback" not in result.stderr


def test_every_test_security_md_names_exists() -> None:
    """SECURITY.md names the test behind each promise; a renamed or deleted test must not leave a dangling claim."""
    named = set(re.findall(r"`(test_\w+)", (REPO / "SECURITY.md").read_text()))
    defined = {m.group(1) for path in (REPO / "tests").glob("test_*.py")
               for m in re.finditer(r"^def (test_\w+)", path.read_text(), re.M)}
    assert len(named) > 40, "SECURITY.md names the tests that hold its promises"
    assert sorted(named - defined) == []
