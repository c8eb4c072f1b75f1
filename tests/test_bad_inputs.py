"""Odd argument values and hostile small files: exit 2 with one line, never exit 3 or a traceback.

Every case goes through ``import_model.cli.main`` as the console script does. The inputs are the
ones a hostile-input probe found reaching "internal error": a Python keyword as slug, a config nested
900 levels deep, seeds outside torch's range, ``~nouser`` paths, 5,000-character names, a symlink loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from import_model import cli
from import_model.errors import UserError
from import_model.source import MAX_NAME_BYTES, open_source, user_path
from import_model.source.base import MAX_JSON_DEPTH, json_depth

CONFIG = {
    "architectures": ["OwlLlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
    "vocab_size": 128, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
}
LONG = "a" * 5000


def _nested(depth: int) -> dict:
    doc: dict = {"a": 1}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(CONFIG))
    deep = root / "deep"
    deep.mkdir()
    (deep / "config.json").write_text(json.dumps(_nested(900)))
    deep_index = root / "deep_index"
    deep_index.mkdir()
    (deep_index / "config.json").write_text(json.dumps(CONFIG))
    (deep_index / "model.safetensors.index.json").write_text(json.dumps({"weight_map": _nested(900)}))
    loop = root / "loop"
    loop.symlink_to(loop)
    port = root / "port"
    port.mkdir()
    (port / "__init__.py").write_text("")
    return {"root": root, "model": model, "deep": deep, "deep_index": deep_index, "loop": loop, "port": port}


Argv = Callable[[dict[str, Path]], list[str]]

CASES: dict[str, Argv] = {
    # a Python keyword as slug, wherever a slug is accepted
    "slug-keyword-scaffold": lambda d: ["scaffold", str(d["model"]), "--start-from", "llama3",
                                        "--output-dir", str(d["root"] / "o1"), "--slug", "class"],
    "slug-keyword-port": lambda d: ["port", str(d["model"]), "--output-dir", str(d["root"] / "o2"),
                                    "--slug", "lambda", "--no-verify"],
    # a config (or shard index) nested far deeper than any real one
    "deep-config-inspect": lambda d: ["inspect", str(d["deep"])],
    "deep-config-plan": lambda d: ["plan", str(d["deep"])],
    "deep-config-walls": lambda d: ["check-walls", str(d["deep"])],
    "deep-config-twin": lambda d: ["twin", str(d["deep"]), "--output", str(d["root"] / "t0")],
    "deep-index-list-keys": lambda d: ["list-keys", str(d["deep_index"])],
    # seeds torch cannot take (or would alias: -1 is the same generator state as 2**64-1)
    "seed-huge": lambda d: ["twin", str(d["model"]), "--output", str(d["root"] / "t1"), "--seed", str(2**70)],
    "seed-2**64": lambda d: ["twin", str(d["model"]), "--output", str(d["root"] / "t2"), "--seed", str(2**64)],
    "seed-negative": lambda d: ["twin", str(d["model"]), "--output", str(d["root"] / "t3"), "--seed", "-1"],
    # ~nouser: Path.expanduser raises RuntimeError
    "tilde-model": lambda d: ["inspect", "~nouser/x"],
    "tilde-twin-output": lambda d: ["twin", str(d["model"]), "--output", "~nouser/x"],
    "tilde-scaffold-output-dir": lambda d: ["scaffold", str(d["model"]), "--start-from", "llama3",
                                            "--output-dir", "~nouser/x"],
    "tilde-port-output-dir": lambda d: ["port", str(d["model"]), "--output-dir", "~nouser/x", "--no-verify"],
    "tilde-plan-markdown": lambda d: ["plan", str(d["model"]), "--markdown", "~nouser/x.md"],
    "tilde-renames-port-dir": lambda d: ["renames", str(d["model"]), "--port-dir", "~nouser/x"],
    "tilde-gates-port-dir": lambda d: ["gates", str(d["model"]), "--port-dir", "~nouser/x", "--phase", "preflight"],
    "tilde-verify-port-dir": lambda d: ["verify", str(d["model"]), "--port-dir", "~nouser/x"],
    "tilde-serve-port-dir": lambda d: ["serve", str(d["model"]), "--port-dir", "~nouser/x"],
    "tilde-serve-log": lambda d: ["serve", str(d["model"]), "--port-dir", str(d["port"]), "--log", "~nouser/x"],
    "tilde-audit": lambda d: ["audit", "~nouser/x"],
    # names longer than the file system allows (OSError: File name too long from stat)
    "long-model": lambda d: ["inspect", LONG],
    "long-model-path": lambda d: ["check-walls", "/tmp/" + LONG],
    "long-twin-output": lambda d: ["twin", str(d["model"]), "--output", str(d["root"] / LONG)],
    "long-scaffold-output-dir": lambda d: ["scaffold", str(d["model"]), "--start-from", "llama3",
                                           "--output-dir", str(d["root"] / LONG)],
    "long-plan-markdown": lambda d: ["plan", str(d["model"]), "--markdown", str(d["root"] / LONG)],
    "long-audit": lambda d: ["audit", str(d["root"] / LONG)],
    "long-gates-port-dir": lambda d: ["gates", str(d["model"]), "--port-dir", str(d["root"] / LONG)],
    # other OSErrors from stat: a symlink loop
    "loop-model": lambda d: ["inspect", str(d["loop"])],
    "loop-twin-output": lambda d: ["twin", str(d["model"]), "--output", str(d["loop"])],
    # empty paths (an empty --output meant the working directory)
    "empty-model": lambda d: ["inspect", ""],
    "empty-twin-output": lambda d: ["twin", str(d["model"]), "--output", ""],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line(case: str, dirs: dict[str, Path], capfd: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from import_model.commands.verify import CHILD_FLAG

    monkeypatch.delenv("IMPORT_MODEL_DEBUG", raising=False)
    monkeypatch.setenv(CHILD_FLAG, "1")  # verify in this process (the supervising parent only relays the child)
    code = cli.main(CASES[case](dirs))
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.lstrip().startswith("…")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "internal error" not in err and "Traceback" not in err
    assert len(lines[0]) < 400, "a 5,000-character argument is cut in the message"
    assert not (dirs["root"].parent / "~nouser").exists() and not Path("~nouser").exists()


def test_no_bad_input_wrote_anything(dirs: dict[str, Path]) -> None:
    """The refused commands created none of their output directories."""
    made = {p.name for p in dirs["root"].iterdir()} - {"model", "deep", "deep_index", "loop", "port"}
    assert made == set()


def test_keyword_slug_message_names_a_way_out(dirs: dict[str, Path], capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(CASES["slug-keyword-scaffold"](dirs)) == 2
    err = capfd.readouterr().err
    assert "Python keyword" in err and "--slug class_port" in err


def test_json_depth_limit() -> None:
    assert json_depth({}) == 1 and json_depth({"a": [1, {"b": 2}]}) == 3 and json_depth(5) == 0
    assert json_depth(_nested(MAX_JSON_DEPTH)) == MAX_JSON_DEPTH
    assert json_depth(_nested(10_000)) == MAX_JSON_DEPTH + 1  # stops early, no recursion


def test_config_at_the_depth_limit_is_read_and_one_deeper_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(_nested(MAX_JSON_DEPTH)))
    assert json_depth(open_source(str(tmp_path)).read_json("config.json")) == MAX_JSON_DEPTH
    (tmp_path / "config.json").write_text(json.dumps(_nested(MAX_JSON_DEPTH + 1)))
    with pytest.raises(UserError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        open_source(str(tmp_path)).read_json("config.json")


def test_user_path_expands_home_and_accepts_new_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_path("~/not/yet", "--output") == tmp_path / "not" / "yet"
    assert user_path(str(tmp_path / ("n" * MAX_NAME_BYTES)), "--output").name == "n" * MAX_NAME_BYTES
    with pytest.raises(UserError, match="path too long"):
        user_path(str(tmp_path / ("n" * (MAX_NAME_BYTES + 1))), "--output")
    with pytest.raises(UserError, match=r"^--output ~nouser/x: cannot expand ~"):
        user_path("~nouser/x", "--output")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads through any permission")
def test_user_path_names_a_permission_problem(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0)
    try:
        with pytest.raises(UserError, match="Permission denied"):
            user_path(str(locked / "inner"), "--port-dir")
    finally:
        locked.chmod(0o755)
