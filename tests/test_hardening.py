"""Hostile inputs, interrupted writes and secrets: the promises SECURITY.md makes, tested.

- Parsers under fuzzing: the shard index, the tracking document (PORT.md) and
  the weight-table block in a port's ``weight_adapters.py`` give a clean error or
  a result, never another exception.
- Writers interrupted with SIGKILL at random moments leave the old result or
  the new one, never a half-written one.
- Nothing from a model repo runs: ``auto_map`` code and pickles are refused
  with the reason; a token never appears in output or reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from import_model.errors import UserError
from import_model.port import tracking
from import_model.port.renames import BEGIN_MARKER, END_MARKER, WeightMapping, write_adapter_table
from import_model.procs import child_env
from import_model.source.local import LocalSource
from tests.support.families import family_twin_dir

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


@FUZZ
@given(index=_json)
def test_fuzz_shard_index(tmp_path_factory: pytest.TempPathFactory, index: object) -> None:
    from import_model.source.checkpoint import load_checkpoint

    root = tmp_path_factory.mktemp("index")
    (root / "config.json").write_text("{}")
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    try:
        load_checkpoint(LocalSource(root))
    except UserError as exc:
        assert exc.message and "\n" not in exc.message


_lines = st.lists(st.sampled_from([tracking.OPEN.format(name="deltas"), tracking.OPEN.format(name="gates"),
                                   tracking.CLOSE, "# Port of x to MAX", "notes by hand", "", "<!-- import-model",
                                   "<!-- /import-model:section --> trailing"]), max_size=12)


@FUZZ
@given(lines=_lines, body=st.text(max_size=40))
def test_fuzz_tracking_document(lines: list[str], body: str) -> None:
    text = "\n".join(lines)
    try:
        updated = tracking.update_text(text, {"deltas": body})
    except UserError:
        return
    start = lines.index(tracking.OPEN.format(name="deltas"))
    end = lines.index(tracking.CLOSE, start)
    out = updated.split("\n")
    assert out[:start + 1] == lines[:start + 1] and out[len(out) - (len(lines) - end):] == lines[end:]


@FUZZ
@given(lines=st.lists(st.sampled_from([BEGIN_MARKER, END_MARKER, "def convert(state_dict):", "    return state_dict",
                                       "# mine", "x = (", ""]), max_size=8))
def test_fuzz_weight_table_block(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    port = tmp_path_factory.mktemp("port")
    (port / "arch.py").write_text("weight_adapters={WeightsFormat.safetensors: weight_adapters.convert}\n")
    original = "\n".join(lines) + "\n"
    (port / "weight_adapters.py").write_text(original)
    mapping = WeightMapping(renames={"model.norm.weight": "norm.weight"})
    try:
        write_adapter_table(port, mapping)
    except UserError:
        assert (port / "weight_adapters.py").read_text() == original  # refused: untouched
        return
    written = (port / "weight_adapters.py").read_text()
    compile(written, "weight_adapters.py", "exec")
    assert written.count(BEGIN_MARKER) == 1 and written.count(END_MARKER) == 1
    # Everything outside the markers is the user's and is kept byte for byte; inside, the table is replaced.
    if BEGIN_MARKER in original:
        end_line = original.index("\n", original.index(END_MARKER)) + 1
        before, after = original[:original.index(BEGIN_MARKER)], original[end_line:]
    else:
        before, after = original, ""
    assert written.startswith(before) and written.endswith(after)


def _kill_after(argv: list[str], delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "import_model", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=child_env())
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.9, 1.6, 2.5])
def test_twin_killed_mid_write_leaves_old_or_new(tmp_path: Path, delay: float) -> None:
    target = tmp_path / "twin"
    subprocess.run([sys.executable, "-m", "import_model", "twin", str(family_twin_dir("helium")), "--output",
                    str(target)], check=True, capture_output=True, env=child_env(), timeout=300)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    _kill_after(["twin", str(family_twin_dir("gemma")), "--output", str(target), "--force"], delay)
    after = {p.name: p.read_bytes() for p in target.iterdir()} if target.exists() else {}
    config = json.loads(after["config.json"]) if "config.json" in after else {}
    assert after == before or (config.get("model_type") == "gemma" and "model.safetensors" in after), \
        f"half-written twin after SIGKILL at {delay}s: {sorted(after)}"


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 4.0, 8.0])
def test_port_killed_mid_write_keeps_the_previous_port(tmp_path: Path, delay: float) -> None:
    model = str(family_twin_dir("helium"))
    subprocess.run([sys.executable, "-m", "import_model", "port", model, "--output-dir", str(tmp_path), "--no-verify"],
                   check=True, capture_output=True, env=child_env(), timeout=600)
    port = tmp_path / "helium"
    before = {p.name: p.read_bytes() for p in port.glob("*.py")}
    tracking_before = (tmp_path / "PORT.md").read_text()
    _kill_after(["port", model, "--output-dir", str(tmp_path), "--no-verify", "--force"], delay)
    after = {p.name: p.read_bytes() for p in port.glob("*.py")}
    assert set(after) == set(before), f"files lost or half-written after SIGKILL at {delay}s"
    for name, data in after.items():
        compile(data, name, "exec")  # every file is whole
    assert (tmp_path / "PORT.md").read_text().startswith(tracking_before.split("\n", 1)[0])


def test_remote_code_and_pickles_are_refused_with_the_reason(tmp_path: Path) -> None:
    model = tmp_path / "remote"
    model.mkdir()
    config = json.loads((family_twin_dir("llama") / "config.json").read_text())
    config["architectures"] = ["SneakyForCausalLM"]
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_sneaky.SneakyForCausalLM"}
    (model / "config.json").write_text(json.dumps(config))
    (model / "modeling_sneaky.py").write_text("import os\nos.system('touch PWNED')\n")
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    result = subprocess.run([sys.executable, "-m", "import_model", "check-walls", str(model)], capture_output=True,
                            text=True, env=child_env(), timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert "pickle" in result.stdout.lower() and "remote" in result.stdout.lower()
    port = subprocess.run([sys.executable, "-m", "import_model", "port", str(model), "--output-dir",
                           str(tmp_path / "ports")], capture_output=True, text=True, env=child_env(), timeout=120,
                          cwd=tmp_path)
    assert port.returncode == 2 and "Traceback" not in port.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "ports" / "llama").exists()


def test_token_never_appears_in_output(tmp_path: Path) -> None:
    secret = "hf_SECRETtokenVALUE0123456789"
    env = child_env(HF_TOKEN=secret, HF_HUB_OFFLINE="1")
    for argv in (["inspect", "org/does-not-exist"], ["plan", str(family_twin_dir("helium")), "--json"],
                 ["port", str(family_twin_dir("helium")), "--output-dir", str(tmp_path), "--no-verify"]):
        result = subprocess.run([sys.executable, "-m", "import_model", *argv], capture_output=True, text=True,
                                env=env, timeout=600)
        assert secret not in result.stdout and secret not in result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert os.environ.get("HF_TOKEN") != secret


def test_verify_refuses_remote_code_unless_trusted(tmp_path: Path) -> None:
    from tests.support.ports import native_port, renamed_checkpoint

    checkpoint = renamed_checkpoint(family_twin_dir("llama"), tmp_path / "ckpt", "RemoteLlamaForCausalLM")
    config_path = checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_remote.RemoteLlamaForCausalLM"}
    config_path.write_text(json.dumps(config))
    (checkpoint / "modeling_remote.py").write_text("raise SystemExit('remote code ran')\n")
    port = native_port("llama3", tmp_path / "ports", "RemoteLlamaForCausalLM", "remote_llama")
    result = subprocess.run([sys.executable, "-m", "import_model", "verify", str(checkpoint), "--port-dir", str(port)],
                            capture_output=True, text=True, env=child_env(), timeout=600)
    assert result.returncode == 2, result.stderr[-1500:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "--trust-remote-code" in error[0] and "auto_map" in error[0]
    assert "remote code ran" not in result.stderr + result.stdout
