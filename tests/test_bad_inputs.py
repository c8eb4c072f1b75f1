"""Odd argument values and hostile small files: exit 2 with one line, never exit 3 or a traceback.

Every case goes through ``import_model.cli.main`` as the console script does. The inputs are the
ones a hostile-input probe found reaching "internal error": a Python keyword as slug, a config nested
900 levels deep, seeds outside torch's range, ``~nouser`` paths, 5,000-character names, a symlink loop;
and numbers and names the commands took silently (a NaN timeout, a negative tolerance, an empty
prompt, port 0, a directory as ``--json-out``). Numbers and names are refused by argparse itself
(its usage, then one ``error: argument --flag: ...`` line); paths by the command, before any work.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
    nan = root / "nan"
    nan.mkdir()
    (nan / "config.json").write_text(json.dumps(CONFIG | {"rms_norm_eps": float("nan")}))  # json writes NaN
    linked_doc = root / "linked_doc"
    linked_doc.mkdir()
    (linked_doc / "PORT.md").symlink_to(os.devnull)
    (port / "__init__.py").write_text("")
    return {"root": root, "model": model, "deep": deep, "deep_index": deep_index, "loop": loop, "port": port, "linked_doc": linked_doc, "nan": nan,
            "file": model / "config.json"}


Argv = Callable[[dict[str, Path]], list[str]]


def _GATES(d: dict[str, Path]) -> list[str]:  # noqa: N802 - reads as a constant prefix in the table
    return ["gates", str(d["model"]), "--port-dir", str(d["port"]), "--phase", "preflight"]


def _SERVE(d: dict[str, Path]) -> list[str]:  # noqa: N802
    return ["serve", str(d["model"]), "--port-dir", str(d["port"])]


def _COMPARE(d: dict[str, Path]) -> list[str]:  # noqa: N802
    return ["compare", str(d["model"]), "--port", "1"]


def _VERIFY(d: dict[str, Path]) -> list[str]:  # noqa: N802
    return ["verify", str(d["model"]), "--port-dir", str(d["port"])]


def _main(argv: list[str]) -> tuple[int, bool]:
    """``cli.main``'s exit code, and whether argparse (not the command) refused the arguments."""
    try:
        return cli.main(argv), False
    except SystemExit as exc:
        return int(exc.code or 0), True


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
    "audit-no-python-files": lambda d: ["audit", str(d["linked_doc"])],  # an attestation over nothing
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
    # an output on a file system that takes no new entries (was exit 3, after the twin was built)
    # PORT.md is written last: a link there is refused before any work (it was refused after the package was written)
    "port-tracking-document-link": lambda d: ["port", str(d["model"]), "--output-dir", str(d["linked_doc"]),
                                              "--no-verify"],
    # a NaN eps would give a twin that computes NaN (and a marker no strict parser reads)
    "twin-config-nan": lambda d: ["twin", str(d["nan"]), "--output", str(d["root"] / "t4")],
    "twin-output-proc": lambda d: ["twin", str(d["model"]), "--output", "/proc/self/x"],
    "twin-output-a-file": lambda d: ["twin", str(d["model"]), "--output", str(d["file"])],
    "empty-scaffold-output-dir": lambda d: ["scaffold", str(d["model"]), "--start-from", "llama3",
                                            "--output-dir", ""],  # meant the working directory
    "empty-port-output-dir": lambda d: ["port", str(d["model"]), "--output-dir", " ", "--no-verify"],
    "empty-scaffold-slug": lambda d: ["scaffold", str(d["model"]), "--start-from", "llama3",
                                      "--output-dir", str(d["root"] / "o3"), "--slug", ""],
    "empty-port-revision": lambda d: ["port", str(d["model"]), "--revision", "", "--no-verify"],
    "empty-plan-markdown": lambda d: ["plan", str(d["model"]), "--markdown", ""],  # was quietly ignored
    "empty-list-archs-match": lambda d: ["list-archs", "--match", ""],
    # gates --json-out: refused before any gate runs (it was an internal error after the gates)
    "gates-json-out-directory": lambda d: [*_GATES(d), "--json-out", str(d["root"])],
    "gates-json-out-slash": lambda d: [*_GATES(d), "--json-out", str(d["root"] / "new") + "/"],
    "gates-json-out-long": lambda d: [*_GATES(d), "--json-out", str(d["root"] / ("j" * 300))],
    "gates-json-out-under-a-file": lambda d: [*_GATES(d), "--json-out", str(d["file"] / "x.json")],
    "gates-json-out-device": lambda d: [*_GATES(d), "--json-out", os.devnull],
    "gates-json-out-empty": lambda d: [*_GATES(d), "--json-out", ""],
    "gates-json-out-tilde": lambda d: [*_GATES(d), "--json-out", "~nouser/x.json"],
    "gates-revision-empty": lambda d: [*_GATES(d), "--revision", ""],
    "inspect-revision-empty": lambda d: ["inspect", str(d["model"]), "--revision", ""],  # was taken as no revision
    "gates-port-dir-file": lambda d: ["gates", str(d["model"]), "--port-dir", str(d["file"])],
    # serve: numbers and names checked before max serve starts
    "serve-timeout-nan": lambda d: [*_SERVE(d), "--timeout", "nan"],
    "serve-timeout-inf": lambda d: [*_SERVE(d), "--timeout", "inf"],
    "serve-timeout-zero": lambda d: [*_SERVE(d), "--timeout", "0"],
    "serve-timeout-over-a-day": lambda d: [*_SERVE(d), "--timeout", "1e9"],
    "serve-max-length-negative": lambda d: [*_SERVE(d), "--max-length", "-5"],
    "serve-max-length-huge": lambda d: [*_SERVE(d), "--max-length", str(2**40)],
    "serve-max-batch-size-zero": lambda d: [*_SERVE(d), "--max-batch-size", "0"],
    "serve-port-zero": lambda d: [*_SERVE(d), "--port", "0"],
    "serve-port-70000": lambda d: [*_SERVE(d), "--port", "70000"],
    "serve-host-empty": lambda d: [*_SERVE(d), "--host", ""],
    "serve-host-markup": lambda d: [*_SERVE(d), "--host", "[/x]\x1b[31m"],
    "serve-host-ipv6": lambda d: [*_SERVE(d), "--host", "::1"],  # max serve is bound over IPv4 here
    "serve-host-not-local": lambda d: [*_SERVE(d), "--host", "203.0.113.7"],
    "serve-encoding-empty": lambda d: [*_SERVE(d), "--encoding", ""],
    "serve-served-model-name-blank": lambda d: [*_SERVE(d), "--served-model-name", "  "],
    "serve-log-directory": lambda d: [*_SERVE(d), "--log", str(d["root"])],
    "serve-log-under-a-file": lambda d: [*_SERVE(d), "--log", str(d["file"] / "serve.log")],
    "serve-port-dir-not-a-port": lambda d: ["serve", str(d["model"]), "--port-dir", str(d["model"])],
    "serve-port-dir-file": lambda d: ["serve", str(d["model"]), "--port-dir", str(d["file"])],
    # compare: checked before any request
    "compare-timeout-negative": lambda d: [*_COMPARE(d), "--timeout", "-1"],
    "compare-timeout-nan": lambda d: [*_COMPARE(d), "--timeout", "nan"],
    "compare-port-zero": lambda d: ["compare", str(d["model"]), "--port", "0"],
    "compare-port-70000": lambda d: ["compare", str(d["model"]), "--port", "70000"],
    "compare-port-negative": lambda d: ["compare", str(d["model"]), "--port", "-1"],
    "compare-port-not-a-number": lambda d: ["compare", str(d["model"]), "--port", "http"],
    "compare-tokens-zero": lambda d: [*_COMPARE(d), "--tokens", "0"],
    "compare-tokens-too-many": lambda d: [*_COMPARE(d), "--tokens", "513"],
    "compare-tolerance-nan": lambda d: [*_COMPARE(d), "--tolerance", "nan"],
    "compare-tolerance-negative": lambda d: [*_COMPARE(d), "--tol", "-1e-3"],
    "compare-tolerance-inf": lambda d: [*_COMPARE(d), "--tolerance", "inf"],
    "compare-prompt-empty": lambda d: [*_COMPARE(d), "--prompt", ""],
    "compare-prompt-blank": lambda d: [*_COMPARE(d), "--prompt", "hello", "--prompt", " \t "],
    "compare-slug-empty": lambda d: [*_COMPARE(d), "--slug", ""],
    "compare-host-control": lambda d: [*_COMPARE(d), "--host", "local\x1bhost"],  # was InvalidURL, exit 3
    "compare-host-long-label": lambda d: [*_COMPARE(d), "--host", "a" * 64],  # was an idna UnicodeError
    "compare-host-dots": lambda d: [*_COMPARE(d), "--host", ".."],
    # verify: checked in the supervising parent, before a child starts or a twin is built
    "verify-rel-tol-nan": lambda d: [*_VERIFY(d), "--rel-tol", "nan"],
    "verify-rel-tol-negative": lambda d: [*_VERIFY(d), "--rel-tol", "-1e-4"],
    "verify-rel-tol-inf": lambda d: [*_VERIFY(d), "--rel-tol", "inf"],
    "verify-rel-tol-above-one": lambda d: [*_VERIFY(d), "--rel-tol", "2"],
    "verify-prompt-empty": lambda d: [*_VERIFY(d), "--prompt", ""],
    "verify-prompt-blank": lambda d: [*_VERIFY(d), "--prompt", "  \n\t"],
    "verify-decode-steps-negative": lambda d: [*_VERIFY(d), "--decode-steps", "-1"],
    "verify-decode-steps-65": lambda d: [*_VERIFY(d), "--decode-steps", "65"],
    "verify-decode-steps-5000-digits": lambda d: [*_VERIFY(d), "--decode-steps", "9" * 5000],
    "verify-revision-empty": lambda d: [*_VERIFY(d), "--revision", " "],
    "verify-report-dir-file": lambda d: [*_VERIFY(d), "--report-dir", str(d["file"])],
    "verify-report-dir-under-a-file": lambda d: [*_VERIFY(d), "--report-dir", str(d["file"] / "r")],
    "verify-report-dir-root": lambda d: [*_VERIFY(d), "--report-dir", "/"],
    "verify-report-dir-long": lambda d: [*_VERIFY(d), "--report-dir", str(d["root"] / LONG)],
    "verify-port-dir-file": lambda d: ["verify", str(d["model"]), "--port-dir", str(d["file"])],
    "verify-port-dir-missing": lambda d: ["verify", str(d["model"]), "--port-dir", str(d["root"] / "no-port")],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line(case: str, dirs: dict[str, Path], capfd: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from import_model.commands.verify import CHILD_FLAG

    monkeypatch.delenv("IMPORT_MODEL_DEBUG", raising=False)
    monkeypatch.setenv(CHILD_FLAG, "1")  # verify in this process (the supervising parent only relays the child)
    code, by_argparse = _main(CASES[case](dirs))
    captured = capfd.readouterr()
    err = captured.err
    lines = [line for line in err.splitlines() if line.strip() and not line.lstrip().startswith("…")]
    assert code == 2, err
    assert "internal error" not in err and "Traceback" not in err
    if by_argparse:  # argparse's usage block, then its one error line naming the flag
        assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), err
        assert re.match(r"import-model [\w-]+: error: argument ", lines[-1]), err
    else:
        assert len(lines) == 1, err
        assert lines[0].startswith("error: ")
        assert captured.out == "", "refused before any work was shown"
    assert len(lines[-1]) < 400, "a 5,000-character argument is cut in the message"
    assert not (dirs["root"].parent / "~nouser").exists() and not Path("~nouser").exists()


def test_no_bad_input_wrote_anything(dirs: dict[str, Path]) -> None:
    """The refused commands created none of their output directories."""
    made = {p.name for p in dirs["root"].iterdir()} - {"model", "deep", "deep_index", "loop", "port", "linked_doc",
                                                     "nan"}
    assert made == set()
    assert [p.name for p in dirs["linked_doc"].iterdir()] == ["PORT.md"]


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


def _parse(argv: list[str]) -> argparse.Namespace:
    return cli.build_parser().parse_args(argv)


def test_numeric_flags_keep_their_edge_values() -> None:
    """The checks refuse only nonsense: the edges of each range still parse."""
    args = _parse(["compare", "m", "--port", "65535", "--tokens", "512", "--tolerance", "0", "--timeout", "0.5",
                   "--host", "::1", "--prompt", " hi "])
    assert (args.port, args.tokens, args.tolerance, args.timeout, args.host, args.prompt) == (
        65535, 512, 0.0, 0.5, "::1", [" hi "])
    args = _parse(["serve", "m", "--port-dir", "p", "--port", "1", "--max-length", "1", "--max-batch-size", "1",
                   "--timeout", "86400", "--host", "0.0.0.0"])
    assert (args.port, args.max_length, args.max_batch_size, args.timeout) == (1, 1, 1, 86400.0)
    args = _parse(["verify", "m", "--port-dir", "p", "--rel-tol", "0", "--decode-steps", "0"])
    assert (args.rel_tol, args.decode_steps) == (0.0, 0)
    assert _parse(["verify", "m", "--port-dir", "p", "--rel-tol", "1", "--decode-steps", "64"]).decode_steps == 64
    assert _parse(["compare", "m", "--port", "8000", "--host", "my-box.local"]).host == "my-box.local"


def test_gates_json_out_is_refused_before_any_gate_runs(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    from import_model.verify import gates

    def no_gates(*_args: object, **_kw: object) -> None:
        raise AssertionError("the gates ran before --json-out was checked")

    monkeypatch.setattr(gates, "open_context", no_gates)
    assert cli.main(CASES["gates-json-out-directory"](dirs)) == 2
    assert "is a directory; name a file to write" in capfd.readouterr().err


def test_gates_json_out_into_a_new_directory_is_written(dirs: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "new" / "gates.json"
    code = cli.main([*_GATES(dirs), "--json-out", str(target)])
    payload = json.loads(target.read_text())
    assert payload["exit_code"] == code and payload["phase"] == "preflight" and payload["gates"]


def test_output_paths(tmp_path: Path) -> None:
    from import_model.arg_types import output_dir, output_file

    existing = tmp_path / "old.json"
    existing.write_text("{}")
    assert output_file(str(existing), "--json-out") == existing  # an existing file is replaced
    assert output_file(str(tmp_path / "a" / "b.json"), "--json-out") == tmp_path / "a" / "b.json"
    assert output_file(os.devnull, "--log", devices_ok=True) == Path(os.devnull)  # `--log /dev/null` is fine
    assert output_dir(str(tmp_path / "reports"), "--report-dir") == tmp_path / "reports"
    with pytest.raises(UserError, match="is a file, not a directory"):
        output_dir(str(existing), "--report-dir")
    with pytest.raises(UserError, match="refusing to write into the file-system root"):
        output_dir("/", "--report-dir")


def test_compare_puts_an_ipv6_host_in_brackets(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from import_model.verify import compare

    seen: list[str] = []

    class Client:
        def __init__(self, host: str, port: int, timeout: float) -> None:
            seen.append(f"{host}:{port}")
            raise UserError("stop here")

    monkeypatch.setattr(compare, "ServerClient", Client)
    assert cli.main(["compare", str(dirs["model"]), "--port", "8000", "--host", "::1"]) == 2
    assert cli.main(["compare", str(dirs["model"]), "--port", "8000"]) == 2
    assert seen == ["[::1]:8000", "127.0.0.1:8000"]
