"""The guide is tested: runnable shell blocks run, relative links resolve, and every command and flag exists.

The guides are README.md, SKILL.md, references/*.md and docs/*.md. Every
``import-model <command> ...`` they show in a fenced block or an inline code
span (spans may wrap lines; blocks may continue lines with a backslash), and
every span that starts with a command's name (``verify --weights full``), is
checked against the parser ``import_model.cli.build_parser`` builds: the command
must exist and each ``--flag`` must be one its subparser defines.

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
DOCS = [REPO / "SKILL.md", REPO / "README.md", *sorted((REPO / "references").glob("*.md")),
        *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: ``import-model CMD ...`` (or the dispatcher script) up to the end of its shell command.
INVOCATION = re.compile(r"(?:import-model|scripts/import_model\.py)\s+([a-z][a-z-]*)(.*)")
#: Where a shell command ends: a pipe (not a Markdown-escaped ``\|``), ``;``, ``&&``, a comment, a redirect.
COMMAND_END = re.compile(r"(?<!\\)\||;|&&|\s#|>|\)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
#: ``max serve`` flags the guides name on their own (MAX 26.7's ``max serve --help`` defines each); any other flag
#: shown alone in a code span must be one of import-model's.
MAX_SERVE_FLAGS = frozenset({"--devices", "--task", "--pool-embeddings", "--custom-architectures",
                             "--data-parallel-degree", "--quantization-encoding", "--model"})
#: Every reference file the seed (the user's procedure) links; each must resolve here.
SEED_REFERENCES = (
    "native-arch-check.md", "read-config-json.md", "recognize-walls.md", "plan-and-veto.md",
    "distributed-transformer.md", "map-to-max.md", "read-modeling-code.md", "honest-docstrings.md",
    "implement-graph.md", "rename-weights.md", "state-dict-audit.md", "serve-and-iterate.md", "divergences.md",
    "layer-by-layer-debugging.md", "validation-tiers.md", "pitfalls.md", "pitfalls-config.md", "tests-and-ci.md",
    "template.md",
)


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


def _code(text: str) -> list[tuple[str, bool]]:
    """The places the docs show commands, whitespace folded to one space, each with whether it is an inline span:
    every line of a fenced block (backslash continuations joined) and every inline code span (which may wrap
    lines inside a paragraph)."""
    pieces = []
    for _info, body in (m.groups() for m in FENCE.finditer(text)):
        pieces += [(line, False) for line in body.replace("\\\n", " ").splitlines()]
    pieces += [(span, True) for span in re.findall(r"`((?:[^`\n]|\n(?!\s*\n))+)`", FENCE.sub("", text))]
    return [(" ".join(piece.split()), span) for piece, span in pieces]


def invocations(text: str, commands: set[str]) -> list[tuple[str, list[str]]]:
    """``(command, flags)`` for every import-model invocation in ``text``'s code, and every inline span that starts
    with a command's name; the command as written, so a name the CLI lacks is returned too."""
    found = []
    for piece, span in _code(text):
        for match in INVOCATION.finditer(piece):
            rest = COMMAND_END.split(match.group(2), maxsplit=1)[0]
            found.append((match.group(1), FLAG.findall(rest)))
        first, _, rest = piece.partition(" ")
        if span and first in commands and "import-model" not in piece and FLAG.search(rest):
            found.append((first, FLAG.findall(COMMAND_END.split(rest, maxsplit=1)[0])))
    return found


def unknown_commands_and_flags(text: str) -> list[str]:
    """Every ``import-model <command>`` the CLI lacks and every ``--flag`` its command's parser does not define."""
    parsers = _subcommands()
    problems = []
    for name, flags in invocations(text, set(parsers)):
        if name not in parsers:
            problems.append(f"`import-model {name}` is not a command")
            continue
        problems += [f"`import-model {name} {flag}` is not a flag of {name}" for flag in flags
                     if flag not in parsers[name]]
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_and_flag_mentioned_exists(path: Path) -> None:
    assert unknown_commands_and_flags(path.read_text()) == [], path.name


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_flag_shown_alone_exists(path: Path) -> None:
    """A span that is only a flag (`--rel-tol`) names a flag some import-model command has, or a max serve flag."""
    known = set().union(*_subcommands().values()) | MAX_SERVE_FLAGS
    alone = [FLAG.match(piece).group(1) for piece, span in _code(path.read_text()) if span and FLAG.match(piece)]
    assert sorted(set(alone) - known) == [], path.name


def test_the_command_check_catches_what_the_cli_lacks() -> None:
    """The check above can fail: a made-up command, a made-up flag, a flag of another command, wherever shown."""
    text = "\n".join([
        "Run `import-model transmogrify MODEL` first.",
        "Then `import-model port MODEL --output-dir DIR",
        "  --no-such-flag`, wrapped inside a paragraph.",
        "```sh",
        "import-model verify MODEL --port-dir DIR \\",
        "  --tolerance 1e-3 | tee log  # --tee-flag is not import-model's",
        "```",
        "| `serve MODEL --json` | a table row without the prefix |",
        "`import-model gates MODEL --port-dir DIR --phase smoke\\|verify` and `max serve --devices gpu:0,1` pass.",
    ])
    assert unknown_commands_and_flags(text) == [
        "`import-model verify --tolerance` is not a flag of verify",
        "`import-model transmogrify` is not a command",
        "`import-model port --no-such-flag` is not a flag of port",
        "`import-model serve --json` is not a flag of serve",
    ]


def test_every_reference_the_seed_links_exists() -> None:
    missing = [name for name in SEED_REFERENCES if not (REPO / "references" / name).is_file()]
    assert missing == []


def test_skill_is_installable() -> None:
    """SKILL.md opens with the YAML frontmatter agent runtimes read: a name, and when to use it and when not."""
    import yaml

    text = (REPO / "SKILL.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("\n---\n", 1)[0][4:])
    assert re.fullmatch(r"[a-z0-9-]{1,64}", front["name"])
    description = " ".join(front["description"].split())
    assert 100 <= len(description) <= 1024
    assert "Use it" in description and "Do not use it" in description


def test_skill_names_every_command() -> None:
    """The procedure uses each command where its step needs it, list-archs and twin included."""
    text = (REPO / "SKILL.md").read_text()
    shown = {name for name, _flags in invocations(text, set(_subcommands()))}
    assert sorted(set(_subcommands()) - shown) == []


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
