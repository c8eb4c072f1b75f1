"""Text from users and models reaches the terminal as text: no markup, no raw control bytes; JSON is strict.

The CLI runs in-process (``import_model.cli.main``) on small checkpoints built
here whose names, config keys, model card and path carry rich markup (``[/x]``)
and terminal escape sequences. Every run must exit as a clean input would, with
no traceback, show the markup literally and show control characters as
``\\x1b``-style escapes.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from import_model import report
from import_model.cli import main
from import_model.safe_output import finite, first_non_finite, strict_json, visible
from import_model.verify.report_files import write_reports
from tests.support.hub_mirror import safetensors_header

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ESC = "\x1b[31m"
#: Anything a terminal would act on: C0 but newline, DEL, C1, line/paragraph separators, bidi controls, surrogates.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _no_nan(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token}")


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as strict parsers do."""
    return json.loads(text, parse_constant=_no_nan)


def write_checkpoint(directory: Path, config: dict[str, Any], tensors: dict[str, tuple[str, list[int]]],
                     card: str | None = None) -> Path:
    """config.json, one model.safetensors written by hand (header plus zeros) and an optional README.md."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))  # json.dumps writes NaN/Infinity literals
    width = {"F32": 4, "F16": 2, "BF16": 2}
    data = sum(width[dtype] * math.prod(shape) for dtype, shape in tensors.values())
    (directory / "model.safetensors").write_bytes(safetensors_header(tensors, {"format": "pt"}) + bytes(data))
    if card is not None:
        (directory / "README.md").write_text(card)
    return directory


LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 16, "intermediate_size": 16}
HOSTILE_TENSORS = {"[/x]weight": ("F32", [2, 2]), f"evil{ESC}.weight": ("F32", [2]), "model.norm.weight": ("F32", [8])}


@pytest.fixture(autouse=True)
def plain_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh, colourless consoles, so the only escape bytes that could appear are the data's own."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(report, "_console", None)
    monkeypatch.setattr(report, "_err_console", None)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    for stream in (captured.out, captured.err):
        assert "Traceback" not in stream and "MarkupError" not in stream, stream
        assert not RAW_CONTROL.search(stream), repr(stream)
    return code, captured.out, captured.err


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    config = LLAMA | {"[/x]": 1, f"bad{ESC}key": "v\x1b]0;title\x07", "[bold]loud[/bold]": "[/]"}
    card = ("# Card\n\x1b[2J\x1b]0;pwned\x07 This model uses sliding window attention [/x] "
            "and :smile: [link=file:///etc/passwd]here[/link].\r\n")
    return write_checkpoint(tmp_path / "ck [/x] [bold]", config, HOSTILE_TENSORS, card)


def test_list_keys_prefix_with_markup_is_literal(capsys: pytest.CaptureFixture[str], hostile: Path) -> None:
    code, out, _ = run(capsys, "list-keys", str(hostile), "--prefix", "[/x]")
    assert code == 0
    assert "[/x]weight" in out and "model.norm.weight" not in out
    assert "ck [/x] [bold]: 1 tensors" in out  # the path with brackets, in the table title


def test_list_keys_shows_escape_sequences_in_names_visibly(capsys: pytest.CaptureFixture[str], hostile: Path) -> None:
    code, out, _ = run(capsys, "list-keys", str(hostile))
    assert code == 0
    assert "evil\\x1b[31m.weight" in out and "[/x]weight" in out
    code, out, _ = run(capsys, "list-keys", str(hostile), "--summary")
    assert code == 0 and "\\x1b[31m" in out


def test_a_prefix_that_matches_nothing_fails_as_for_clean_input(capsys: pytest.CaptureFixture[str],
                                                                hostile: Path) -> None:
    code, out, err = run(capsys, "list-keys", str(hostile), "--prefix", f"[/y]{ESC}")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: no key starts with [/y]\\x1b[31m;")


def test_inspect_shows_hostile_config_keys_and_card_literally(capsys: pytest.CaptureFixture[str],
                                                              hostile: Path) -> None:
    code, out, _ = run(capsys, "inspect", str(hostile))
    assert code == 0
    assert "ck [/x] [bold]  (local)" in out  # the heading keeps the brackets of the path
    assert "[/x]" in out and "[bold]loud[/bold]" in out and "bad\\x1b[31mkey" in out and "\\x1b]0;title\\x07" in out
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in out and "[link=file:///etc/passwd]here[/link]" in out
    assert ":smile:" in out  # emoji codes in a model card stay text


def test_check_walls_and_json_on_hostile_names(capsys: pytest.CaptureFixture[str], hostile: Path) -> None:
    code, _, _ = run(capsys, "check-walls", str(hostile))
    assert code == 0
    code, out, _ = run(capsys, "list-keys", str(hostile), "--json")
    assert code == 0
    names = {t["name"] for t in strict_loads(out)["tensors"]}
    assert names == set(HOSTILE_TENSORS)  # JSON keeps the exact names (escaped as \u001b by the encoder)


def test_inspect_json_is_strict_with_nan_and_infinity_in_config(capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    config = LLAMA | {"rope_theta": float("nan"), "max_position_embeddings": float("inf"),
                      "odd": {"low": float("-inf"), "list": [1.0, float("nan")]}}
    directory = write_checkpoint(tmp_path / "nan", config, {"model.norm.weight": ("F32", [8])})
    assert "NaN" in (directory / "config.json").read_text()
    code, out, _ = run(capsys, "inspect", str(directory), "--json")
    assert code == 0
    payload = strict_loads(out)
    values = {row["key"]: row["value"] for row in payload["config"]}
    assert values["rope_theta"] is None and values["max_position_embeddings"] is None
    assert "NaN" not in out and "Infinity" not in out
    code, out, _ = run(capsys, "inspect", str(directory))  # the table shows them as Python prints floats
    assert code == 0 and "nan" in out


def test_errors_are_one_line_with_brackets_newlines_and_escapes_visible(capsys: pytest.CaptureFixture[str],
                                                                        tmp_path: Path) -> None:
    missing = tmp_path / f"no [/x] such\nplace{ESC}"
    code, out, err = run(capsys, "inspect", str(missing))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "[/x] such\\nplace\\x1b[31m" in err


def test_argument_errors_show_control_characters_visibly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["inspect", "x", f"{ESC}[/x]\x9b"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: \\x1b[31m[/x]\\x9b" in err and not RAW_CONTROL.search(err)


def test_the_tools_own_styling_still_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a colour terminal the prefix is red and progress dim, while the data's own escapes stay text."""
    sink = io.StringIO()
    monkeypatch.setattr(report, "_err_console", Console(file=sink, force_terminal=True, color_system="standard",
                                                        highlight=False, soft_wrap=True))
    report.error(f"bad [/x] {ESC}name")
    report.progress("reading [dim]x[/dim]")
    text = sink.getvalue()
    assert "error:" in text and "\x1b[1;31m" in text  # rich's own bold red
    assert "\x1b[2m" in text  # dim progress
    without_sgr = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert without_sgr == "error: bad [/x] \\x1b[31mname\n… reading [dim]x[/dim]\n"


def test_verify_report_json_is_strict(tmp_path: Path) -> None:
    result = {"architecture": "X", "passed": False, "per_tap": [], "worst": float("nan"), "timings": {},
              "limits": (float("inf"), 1.5)}
    paths = write_reports(result, tmp_path / "out")
    payload = strict_loads(paths["json"].read_text())
    assert payload["worst"] is None and payload["limits"] == [None, 1.5]


def test_strict_json_helpers() -> None:
    assert finite({"a": [float("nan"), 1.0], "b": {float("inf"): (2, float("-inf"))}}) == {
        "a": [None, 1.0], "b": {"null": [2, None]}}
    value: Any = 0.5
    for _ in range(1500):  # deeper than json.dumps recurses by default: written, not a RecursionError
        value = {"a": [value]}
    written = strict_json(value)
    assert written.count('"a": [') == 1500 and written.count("0.5") == 1
    assert strict_json({"x": object()}, indent=None).startswith('{"x": "<object object')


def test_visible_escapes() -> None:
    assert visible("a\x1b[31mb\nc\td\r\x7f\x9b\u202e\udcff") == "a\\x1b[31mb\\nc\\td\\r\\x7f\\x9b\\u202e\\xff"
    assert visible("one\r\ntwo\tthree\rfour", multiline=True) == "one\ntwo\tthree\\rfour"
    assert visible("plain [/x] text") == "plain [/x] text"


# -- fuzz -------------------------------------------------------------------------------

_NASTY = ["[/x]", "[bold]", "[/]", "[", "]", "\\", "[link=http://x]", ":smile:", ESC, "\x1b]0;t\x07", "\r", "\r\n",
          "\n", "\t", "\x00", "\x7f", "\x9b", "\u202e", "\u2028", "\udcff", "…", "字", "\u0301"]
_text = st.lists(st.one_of(st.sampled_from(_NASTY), st.text(st.characters(blacklist_categories=()), max_size=8)),
                 max_size=8).map("".join)


@pytest.fixture
def sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(report, "_console", Console(file=out, width=60, highlight=False, soft_wrap=False))
    monkeypatch.setattr(report, "_err_console", Console(file=err, highlight=False, soft_wrap=True))
    yield out, err


def _drain(sink: io.StringIO) -> str:
    text = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return text


@FUZZ
@given(title=_text, column=_text, cells=st.lists(st.one_of(_text, st.none(), st.floats(), st.dictionaries(_text, _text,
                                                                                                          max_size=2)),
                                                 min_size=1, max_size=3))
def test_fuzz_table(sinks: tuple[io.StringIO, io.StringIO], title: str, column: str, cells: list[Any]) -> None:
    out, _ = sinks
    report.table(title, [column] * len(cells), [cells, list(reversed(cells))])
    assert not RAW_CONTROL.search(_drain(out))


@FUZZ
@given(message=_text)
def test_fuzz_progress_error_heading_line(sinks: tuple[io.StringIO, io.StringIO], message: str) -> None:
    out, err = sinks
    report.progress(message)
    assert _drain(err) == f"… {visible(message)}\n"
    report.error(message)
    assert _drain(err) == f"error: {visible(message)}\n"
    report.heading(message)
    report.line(message)
    report.line(message, style="yellow")
    text = _drain(out)
    assert not RAW_CONTROL.search(text.replace("\t", " "))


def test_audit_table_is_bounded_and_json_lists_every_hit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from import_model.commands.port_cmds import AUDIT_TABLE_ROWS

    port = tmp_path / "port"
    port.mkdir()
    (port / "arch.py").write_text(("# Llama " * 20 + "\n") * 50)  # 1,000 stale donor words
    code, out, _err = run(capsys, "audit", str(port))
    assert code == 1
    assert out.count("arch.py:") == AUDIT_TABLE_ROWS
    assert f"and {1000 - AUDIT_TABLE_ROWS} more" in out
    code, out, _err = run(capsys, "audit", str(port), "--json")
    assert code == 1
    assert sum(1 for hit in strict_loads(out)["hits"] if hit["verdict"] == "Stale") == 1000


@pytest.mark.parametrize("columns", ["abc", "-40", "0", "100000000", ""])
def test_any_columns_value_gives_a_table(hostile: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setattr(report, "_console", None)  # the console reads COLUMNS when it is first made
    code, out, _err = run(capsys, "list-keys", str(hostile))
    assert code == 0
    assert "model.norm.weight" in out and "[/x]weight" in out


def test_first_non_finite_names_the_path() -> None:
    assert first_non_finite({"a": 1.0, "b": [0.5, {"c": math.inf}]}) == "b[1].c"
    assert first_non_finite({"eps": math.nan}) == "eps"
    assert first_non_finite({"a": [1, 2.5, "nan"], "b": None}) is None
