"""`import-model serve` / `compare`: MaxServer's life cycle and served logprobs against the HF reference.

The slow tests share ONE `max serve` (one compile): a llama twin whose config names
``ServedLlamaForCausalLM``, served from a copy of MAX's llama3 registered under that name.
The fast tests need no MAX server: a closed port, and a stand-in server that answers with
HF's own numbers (or tampered ones) to pin the verdicts and exit codes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from import_model.verify.serve import MaxServer, ServeOptions, free_port, log_tail, serve_command
from tests.support.families import REPO_ROOT, family_twin_dir

CLASS_NAME = "ServedLlamaForCausalLM"
SLUG = "served_llama"
PROMPTS = ("The quick brown fox jumps over", "In a hole in the ground there lived")
TOKENS = 8


def _env() -> dict[str, str]:
    env = dict(os.environ, MAX_SERVE_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "import_model", *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout, cwd=REPO_ROOT)


def _renamed_twin(target: Path) -> Path:
    shutil.copytree(family_twin_dir("llama"), target)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = [CLASS_NAME]
    config_path.write_text(json.dumps(config, indent=2))
    return target


# -- fast ---------------------------------------------------------------------------------


def _closed_port() -> int:
    port = free_port()
    with socket.socket() as sock:  # nothing listens: connect is refused
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    return port


def test_compare_against_a_closed_port_exits_2_with_one_line() -> None:
    proc = _cli("compare", str(family_twin_dir("llama")), "--slug", SLUG, "--port", str(_closed_port()),
                timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot reach max serve" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_serve_command_follows_the_device_tier(tmp_path: Path) -> None:
    cpu = serve_command(ServeOptions(model="m", port_dir=tmp_path), 8000)
    gpu = serve_command(ServeOptions(model="m", port_dir=tmp_path, device="gpu"), 8000)
    forced = serve_command(ServeOptions(model="m", port_dir=tmp_path, device="gpu", encoding="float32"), 8000)
    assert cpu[cpu.index("--quantization-encoding") + 1] == "float32"
    assert cpu[cpu.index("--devices") + 1] == "cpu"
    assert gpu[gpu.index("--quantization-encoding") + 1] == "bfloat16"
    assert forced[forced.index("--quantization-encoding") + 1] == "float32"
    assert "--max-length" not in cpu and cpu[cpu.index("--custom-architectures") + 1] == str(tmp_path)


def test_log_tail_is_the_exception_line_else_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    log.write_text("\n".join(f"line {i}" for i in range(20)) + "\n\nValueError: boom\n")
    tail = log_tail(log)
    assert tail == "ValueError: boom"
    log.write_text("\n".join(f"line {i}" for i in range(20)) + "\n")
    tail = log_tail(log)
    assert "\n" not in tail and tail.endswith("line 19") and "line 5" not in tail


class _StandIn(BaseHTTPRequestHandler):
    """Answers /v1/models and /v1/completions from canned replies keyed by prompt."""

    replies: dict[str, dict[str, Any]] = {}

    def log_message(self, *_args: Any) -> None:
        pass

    def _send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._send({"object": "list", "data": [{"id": SLUG, "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send({"choices": [self.replies[request["prompt"]]]})


def _hf_replies(checkpoint: Path, shift: float) -> dict[str, dict[str, Any]]:
    """What a faithful server would answer (HF's own greedy tokens), last logprob moved by ``shift``."""
    from transformers import AutoTokenizer

    from import_model.verify.compare import log_softmax
    from import_model.verify.hf_reference import HFReference

    reference, tokenizer = HFReference.load(checkpoint), AutoTokenizer.from_pretrained(str(checkpoint))
    replies = {}
    for prompt in PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        generated = reference.greedy(ids, TOKENS)
        rows = log_softmax(reference.run(ids + generated)["logits"])[len(ids) - 1:]
        logprobs = [float(rows[j][t]) for j, t in enumerate(generated)]
        logprobs[-1] += shift
        replies[prompt] = {"text": tokenizer.decode(generated), "token_ids": generated, "prompt_token_ids": ids,
                           "logprobs": {"token_logprobs": logprobs, "top_logprobs": [{} for _ in generated]}}
    return replies


@pytest.fixture(scope="module")
def stand_in() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("shift", "code"), [(0.0, 0), (0.01, 1)])
def test_compare_verdict_against_a_stand_in_server(stand_in: int, shift: float, code: int) -> None:
    checkpoint = family_twin_dir("llama")
    _StandIn.replies = _hf_replies(checkpoint, shift)
    args = ["compare", str(checkpoint), "--port", str(stand_in), "--tokens", str(TOKENS), "--json"]
    for prompt in PROMPTS:
        args += ["--prompt", prompt]
    proc = _cli(*args, timeout=300)
    assert proc.returncode == code, proc.stderr
    result = json.loads(proc.stdout)
    assert result["served_model"] == SLUG and result["positions"] == TOKENS * len(PROMPTS)
    assert all(p["greedy_match"] for r in result["prompts"] for p in r["positions"])
    assert result["max_abs_logprob_diff"] == pytest.approx(shift, abs=1e-5)
    assert [r["passed"] for r in result["prompts"]] == [shift == 0.0] * len(PROMPTS)
    assert all(len(r["layer_stats"]) >= 3 for r in result["prompts"])


# -- slow: one real `max serve` ----------------------------------------------------------------


@dataclass
class Served:
    server: MaxServer
    checkpoint: Path

    @property
    def port(self) -> str:
        return str(self.server.port)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Served:
    from import_model.port.native_copy import copy_native_port

    root = tmp_path_factory.mktemp("served")
    checkpoint = _renamed_twin(root / "ckpt")
    port_dir = copy_native_port("llama3", root / "ports", class_name=CLASS_NAME, port_slug=SLUG)
    server = MaxServer(ServeOptions(model=str(checkpoint), port_dir=port_dir, device="cpu", max_length=128,
                                    max_batch_size=1, served_model_name=SLUG, log_path=root / "serve.log"))
    request.addfinalizer(server.stop)  # registered first: the server goes even if the start fails
    server.start()
    server.wait_ready()
    return Served(server, checkpoint)


@pytest.mark.slow
def test_served_port_matches_hf_logprobs(served: Served) -> None:
    args = ["compare", str(served.checkpoint), "--slug", SLUG, "--port", served.port, "--tokens", str(TOKENS), "--json"]
    for prompt in PROMPTS:
        args += ["--prompt", prompt]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["passed"] and len(result["prompts"]) == 2
    for prompt in result["prompts"]:
        assert len(prompt["positions"]) >= 8 and prompt["prompt_ids_match"]
        for position in prompt["positions"]:
            assert position["greedy_match"] and position["diff"] < 1e-3, position
    assert result["max_abs_logprob_diff"] < 1e-3


@pytest.mark.slow
def test_compare_flags_a_different_model_and_a_wrong_slug(served: Served, tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "perturbed"
    shutil.copytree(served.checkpoint, other)
    tensors = load_file(str(other / "model.safetensors"))
    norm = "model.norm.weight"
    tensors[norm] = (tensors[norm] * np.float32(1.5)).astype(tensors[norm].dtype)
    save_file(tensors, str(other / "model.safetensors"), metadata={"format": "pt"})
    proc = _cli("compare", str(other), "--slug", SLUG, "--port", served.port, "--tokens", "4")
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "MISMATCH" in proc.stdout

    script = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "compare_layers.py"), str(other),
                             "--slug", "not-served", "--port", served.port],
                            capture_output=True, text=True, env=_env(), timeout=300)
    assert script.returncode == 2 and len(script.stderr.strip().splitlines()) == 1, script.stderr
    assert SLUG in script.stderr and "Traceback" not in script.stderr


def test_log_tail_reads_only_the_end_of_a_huge_log_and_never_a_fifo(tmp_path: Path) -> None:
    log = tmp_path / "huge.log"
    with log.open("wb") as handle:  # 2 GiB, sparse: reading it whole would take the machine's memory
        handle.write(b"ValueError: early\n")
        handle.truncate(2 * 1024**3)
        handle.seek(0, 2)
        handle.write(b"\nRuntimeError: the last one\n")
    assert log_tail(log) == "RuntimeError: the last one"
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    assert log_tail(fifo) == "(no log)"  # would block forever on open
