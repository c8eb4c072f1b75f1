"""The parity engine on ports whose answer is known.

- A native MAX architecture copied as a custom one must PASS against HF.
- The same copy with one deliberate bug must FAIL and name the first layer the bug touches.
- The real SmolLM2-135M weights through a Llama-donor port: parity, and greedy text that
  matches HF token for token.
- Bad ports are refused before any compile, with one line and exit 2.

Each MAX graph compiles once (minutes cold on 2 cores; the compile cache makes reruns quick).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from import_model.max_cpu import one_device_collective_patches, patched
from import_model.procs import child_env
from import_model.verify.engine import max_length_for
from import_model.verify.max_runner import MaxPort
from tests.support.families import family_twin_dir
from tests.support.ports import BREAKAGES, native_port, renamed_checkpoint

REPO = Path(__file__).resolve().parent.parent
ARCH = "ParityLlamaForCausalLM"


def verify(*args: str, timeout: int = 1500) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = subprocess.run([sys.executable, "-m", "import_model", "verify", *args, "--json"],
                            capture_output=True, text=True, timeout=timeout, env=child_env())
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    payload = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result, payload


@pytest.fixture(scope="module")
def llama_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return renamed_checkpoint(family_twin_dir("llama"), tmp_path_factory.mktemp("ckpt") / "llama", ARCH)


@pytest.mark.slow
def test_native_copy_passes(llama_twin: Path, tmp_path: Path) -> None:
    port = native_port("llama3", tmp_path / "ports", ARCH, "parity_llama")
    result, payload = verify(str(llama_twin), "--port-dir", str(port))
    assert result.returncode == 0, result.stderr[-2000:]
    assert payload["passed"] and payload["first_divergence"] is None
    taps = {row["tap"] for row in payload["per_tap"]}
    assert {"embed", "layer_0", "layer_1", "final_norm", "lm_head", "logits"} <= taps
    assert {row["phase"] for row in payload["per_tap"]} == {"prefill", "decode"}
    assert max(row["max_abs"] for row in payload["per_tap"]) < 1e-4
    assert all(p["hf_greedy"] == p["max_greedy"] for p in payload["prompts"])
    assert any(p["tokens"] > 64 for p in payload["prompts"])  # the long prompt
    report_dir = port.parent / f"verify-{port.name}"
    assert "PASS" in (report_dir / "report.md").read_text()
    assert (report_dir / "error_by_layer.svg").read_text().startswith("<svg")


@pytest.mark.slow
@pytest.mark.parametrize("breakage", ["norm_eps_layer1", "rope_theta"])
def test_broken_port_fails_at_the_right_layer(breakage: str, llama_twin: Path, tmp_path: Path) -> None:
    port = native_port("llama3", tmp_path / "ports", ARCH, f"broken_{breakage}", breakage=breakage)
    result, payload = verify(str(llama_twin), "--port-dir", str(port))
    assert result.returncode == 1, result.stderr[-2000:]
    assert not payload["passed"]
    first = payload["first_divergence"]
    assert first["tap"] == BREAKAGES[breakage].first_tap and first["step"] == 0
    # Everything before the broken layer still matches.
    order = payload["tap_order"]
    earlier = set(order[: order.index(first["tap"])])
    assert all(row["ok"] for row in payload["per_tap"] if row["tap"] in earlier)


@pytest.fixture(scope="module")
def smollm2_f32(smollm2_dir: Path) -> Path:
    """SmolLM2 in float32 (MAX's CPU encoding) under a class name MAX does not register."""
    from tests.support.smollm2 import smollm2_float32

    return smollm2_float32("SmolPortForCausalLM")


@pytest.mark.slow
def test_smollm2_real_weights_parity_and_greedy_text(smollm2_f32: Path, tmp_path: Path) -> None:
    port = native_port("llama3", tmp_path / "ports", "SmolPortForCausalLM", "smol_port")
    result, payload = verify(str(smollm2_f32), "--port-dir", str(port), "--weights", "full", "--decode-steps", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert payload["passed"]
    assert any("Paris" in note for note in payload["notes"])  # the oracle answered sensibly first
    texts = payload["greedy_text"]
    assert len(texts) == 2
    for row in texts:
        assert row["match"] and len(row["hf"]) >= 16 and row["hf"] == row["max"]


def test_port_without_init_is_refused(llama_twin: Path, tmp_path: Path) -> None:
    result, _ = verify(str(llama_twin), "--port-dir", str(tmp_path))
    assert result.returncode == 2 and "no __init__.py" in result.stderr


def test_registration_must_match_the_config(llama_twin: Path, tmp_path: Path) -> None:
    port = native_port("llama3", tmp_path / "ports", "OtherNameForCausalLM", "other")
    result, _ = verify(str(llama_twin), "--port-dir", str(port))
    assert result.returncode == 2
    assert "registers OtherNameForCausalLM" in result.stderr and ARCH in result.stderr


def test_unmodified_donor_for_a_non_native_model_is_refused_before_compiling(tmp_path: Path) -> None:
    helium = family_twin_dir("helium")
    port = native_port("llama3", tmp_path / "ports", "HeliumForCausalLM", "helium_port")
    result, _ = verify(str(helium), "--port-dir", str(port), timeout=120)
    assert result.returncode == 2
    assert "unmodified llama3 donor" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_port_that_does_not_import_reports_maxs_message(llama_twin: Path, tmp_path: Path) -> None:
    port = native_port("llama3", tmp_path / "ports", ARCH, "broken_syntax")
    (port / "llama3.py").write_text((port / "llama3.py").read_text() + "\ndef oops(:\n")
    result, _ = verify(str(llama_twin), "--port-dir", str(port), timeout=300)
    assert result.returncode == 2
    assert "building the port's graph failed" in result.stderr
    report = (port.parent / f"verify-{port.name}" / "report.md").read_text()
    assert "SyntaxError" in report


def test_checkpoint_missing_a_weight_is_refused_with_the_weight_named(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    source = family_twin_dir("llama")
    for path in source.iterdir():
        if path.name != "model.safetensors":
            (checkpoint / path.name).write_bytes(path.read_bytes())
    tensors = load_file(str(source / "model.safetensors"))
    del tensors["model.layers.1.self_attn.o_proj.weight"]
    save_file(tensors, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((checkpoint / "config.json").read_text())
    config["architectures"] = [ARCH]
    (checkpoint / "config.json").write_text(json.dumps(config))
    port = native_port("llama3", tmp_path / "ports", ARCH, "missing_weight")
    result, _ = verify(str(checkpoint), "--port-dir", str(port), timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if not line.startswith("…")]  # progress lines aside
    assert len(errors) == 1 and "layers.1.self_attn.o_proj.weight" in errors[0]


def test_a_crash_inside_max_is_exit_2_with_a_report(llama_twin: Path, tmp_path: Path) -> None:
    port = native_port("llama3", tmp_path / "ports", ARCH, "crashing")
    (port / "model.py").write_text((port / "model.py").read_text()
                                   + "\nimport os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    result, _ = verify(str(llama_twin), "--port-dir", str(port), timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "MAX crashed (SIGSEGV)" in result.stderr.strip().splitlines()[-1]
    report = (port.parent / f"verify-{port.name}" / "report.md").read_text()
    assert "SIGSEGV" in report


def test_longrope_models_are_built_for_their_original_context() -> None:
    """MAX's LongRoPE table needs max_length >= half the original context; shorter prompts use short factors."""
    longrope = {"rope_parameters": {"rope_type": "longrope", "original_max_position_embeddings": 4096}}
    assert max_length_for(longrope, 512) == 4096
    assert max_length_for({**longrope, "original_max_position_embeddings": 256}, 512) == 512
    assert max_length_for({"rope_parameters": {"rope_type": "default"}}, 512) == 512


def test_a_model_that_refuses_echo_is_rebuilt_without_it() -> None:
    """MAX's mistral refuses every-position logits before compiling; verify then compares the last position."""
    calls: list[bool] = []

    def auto_model(*_args: object, enable_echo: bool, **_kwargs: object) -> str:
        calls.append(enable_echo)
        if enable_echo:
            raise ValueError("Mistral model does not currently implement enable echo.")
        return "pipeline"

    port = MaxPort.__new__(MaxPort)
    port.echo = True
    assert port._auto_model(auto_model, Path("checkpoint"), None, 512, []) == "pipeline"
    assert calls == [True, False] and port.echo is False


def test_single_cpu_collectives_need_no_accelerator_and_are_restored() -> None:
    from max.driver import CPU, accelerator_count
    from max.nn.comm.allreduce import Allreduce, Signals

    original = Allreduce.__init__
    if accelerator_count() == 0:
        with pytest.raises(Exception, match="gpu"):  # MAX opens an accelerator per device even for one
            Allreduce(num_accelerators=1)
    with patched(one_device_collective_patches(signal_buffers=True)):
        assert Allreduce(num_accelerators=1).devices == []
        (buffer,) = Signals.allocate([CPU()])
        assert buffer.shape == (Signals.NUM_BYTES,) and not buffer.to_numpy()[:4096].any()
    assert Allreduce.__init__ is original


@pytest.mark.parametrize(("config_of", "cls", "final_norm"), [
    # Emu3's language model: transformers' auto mapping has no causal LM for Emu3TextConfig; architectures[0] names it
    (lambda: __import__("transformers").AutoConfig.for_model("emu3").text_config.to_dict()
     | {"architectures": ["Emu3ForCausalLM"]}, "Emu3ForCausalLM", True),
    # TrOCR's only backbone norm runs on the embeddings, before the layers: it is no final norm
    (lambda: __import__("transformers").AutoConfig.for_model("trocr").to_dict()
     | {"architectures": ["TrOCRForCausalLM"]}, "TrOCRForCausalLM", False),
])
def test_the_hf_reference_loads_the_named_class_and_finds_the_norm_after_the_layers(config_of, cls: str,  # noqa: ANN001
                                                                                     final_norm: bool,
                                                                                     tmp_path: Path) -> None:
    from import_model.verify.hf_reference import HFReference
    from import_model.verify.twin import make_twin

    reference = HFReference.load(make_twin(config_of(), tmp_path / "twin").path)
    assert type(reference.model).__name__ == cls
    assert ("final_norm" not in reference.absent_taps()) is final_norm


class _EchoingReference:
    """A stand-in HF reference whose greedy answer is the question again (a base model on a chat template)."""

    def __init__(self, answer: list[int]) -> None:
        self.answer = answer

    def model(self, ids: Any) -> Any:
        import torch

        logits = torch.zeros(1, ids.shape[1], 64)
        logits[..., 7] = 20.0  # confident: not a near-uniform distribution
        return type("Out", (), {"logits": logits})()

    def greedy(self, ids: list[int], tokens: int) -> list[int]:
        return self.answer


class _WordTokenizer:
    """Ids are word positions in a fixed list; the chat template joins the turns' words."""

    chat_template = "turns"
    words = ["<pad>", "What", "is", "the", "capital", "of", "France?", "Italy?", "Rome.", "The", "Paris.", "largest",
             "planet", "in", "solar", "system?"]

    def ids(self, text: str) -> list[int]:
        return [self.words.index(w) for w in text.split(" ") if w in self.words]

    def apply_chat_template(self, messages: list[dict[str, str]], **_: object) -> list[int]:
        return [i for m in messages for i in self.ids(m["content"])]

    def decode(self, ids: list[int], **_: object) -> str:
        return " ".join(self.words[i] for i in ids)


def test_the_oracle_refuses_a_reference_that_echoes_the_question() -> None:
    from import_model.verify.oracle import ORACLE_EXAMPLE, check_oracle, echoes, oracle_messages

    tokenizer = _WordTokenizer()
    check = check_oracle(_EchoingReference(tokenizer.ids("What is the capital of France?")), tokenizer)
    assert not check.sane and any("opens by repeating the question" in p for p in check.problems)
    assert check_oracle(_EchoingReference(tokenizer.ids("The capital of France? is Paris.")), tokenizer).sane
    assert echoes("What is the capital of France?", "what is the CAPITAL of france ? mendatang")
    assert not echoes("What is the capital of France?", "The capital of France is Paris.")
    assert not echoes("What is the capital of France?", "Paris. What is the capital of France?")  # answered first
    turns = oracle_messages("Why?")
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert (turns[0]["content"], turns[1]["content"], turns[2]["content"]) == (*ORACLE_EXAMPLE, "Why?")


def test_a_model_with_per_language_modules_runs_with_its_first_language() -> None:
    from types import SimpleNamespace

    from import_model.verify.hf_reference import _default_language

    chosen: list[str] = []
    model = SimpleNamespace(config=SimpleNamespace(languages=("en_XX", "de_DE"), default_language=None),
                            set_default_language=chosen.append)
    assert "'en_XX'" in _default_language(model)[0] and chosen == ["en_XX"]
    assert _default_language(SimpleNamespace(config=SimpleNamespace(languages=None))) == []


def test_taps_still_being_written_are_waited_for(tmp_path: Path) -> None:
    import threading
    import time
    from types import SimpleNamespace

    from import_model.verify.max_runner import MaxPort

    port = MaxPort.__new__(MaxPort)
    port.tap_dir, port.hook, port._never_written = tmp_path, SimpleNamespace(labels=["imtap__embed__0"]), set()
    late = threading.Timer(0.3, lambda: (tmp_path / "imtap__embed__0.max").write_bytes(b"x" * 16))
    late.start()
    start = time.monotonic()
    port._await_taps(timeout_s=5.0)
    assert (tmp_path / "imtap__embed__0.max").is_file() and time.monotonic() - start >= 0.3
    port.hook.labels.append("imtap__never__0")
    port._await_taps(timeout_s=0.2)
    assert port._never_written == {"imtap__never__0.max"}
