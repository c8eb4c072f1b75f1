"""Every family the catalog must port, end to end, and the real SmolLM2 weights (`make port-matrix`).

Each row is its own graph compile (minutes cold on 2 cores), so this is not in
`make test`; it writes docs/port-matrix.md, which is committed. The whole matrix
runs for hours on 2 cores, so `make port-matrix SHARD=i/N` (environment
``PORT_MATRIX_SHARD``) runs every N-th unit from the i-th: a family, a renamed
family, the SmolLM2 rows or the three Gemma 3 rows; a shard's rerun replaces
only its own rows of the table. The SmolLM2 row
ports the real checkpoint under a class name MAX does not register (so the tool
must port it), checks parity and greedy text on the real weights, then serves
the port with `max serve --custom-architectures` on the CPU and asks it a chat
question. Gemma 3 270M, the second real model, has three rows: MAX's own gemma3
registration on the real weights, the catalog port under a renamed class, and
that port under `import-model serve`, checked by `import-model compare` and
asked a chat question.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pytest

from tests.support.families import family_twin_dir
from tests.support.results import merged_rows
from tests.test_port import run_port

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "port-matrix.md"
REPO = Path(__file__).resolve().parent.parent

#: family -> expected exit code of `port` (1: a delta outside the catalog, named in the port).
FAMILIES: dict[str, int] = {
    "helium": 0, "arcee": 0, "stablelm": 0, "starcoder2": 0, "gemma": 0, "gemma2": 0, "smollm3": 0,
    "gpt_neox": 0, "phi": 0, "cohere": 0, "glm": 0, "exaone4": 0, "olmoe": 0, "qwen2_moe": 0,
    # routed experts on the CPU expert path, routing compared token for token: softmax top-k (Mixtral, FlexOlmo);
    # sigmoid routers choosing through a score-correction bias with a shared expert and dense layers read from the
    # layer's other branch (dots.llm1, GLM-4-MoE, GLM-4-MoE with expert groups, Solar-Open, EXAONE-MoE); every
    # expert stacked in 3-D tensors (GraniteMoE); ERNIE-4.5-MoE's bias kept in a statistics module as [1, E]
    "mixtral": 0, "flex_olmo": 0, "dots1": 0, "glm4_moe": 0, "glm4_moe_grouped": 0, "solar_open": 0,
    "exaone_moe": 0, "granitemoe": 0, "ernie4_5_moe": 0,
    # position tables: learned (GPT-2), computed (XGLM); GPT-Neo's unscaled scores and local layers
    "gpt2": 0, "gpt_neo": 0, "xglm": 0, "nanochat": 0,
    # post-LN: GPT-1 (no final norm, gelu_new from its own table), TrOCR (embedding norm, cross-attention unread)
    "openai-gpt": 0, "trocr": 0,
    # BERT-style decoders (is_decoder): post-LN in output modules, token types, head transform
    "bert": 0, "roberta": 0,
    # families no issue lists
    "vaultgemma": 0, "persimmon": 0, "apertus": 0, "glm4": 0, "hyperclovax": 0, "falcon": 0, "falcon_40b": 0,
    "gptj": 0, "codegen": 0, "bitnet": 0, "nemotron": 0, "ernie4_5": 0,
    "hunyuan_v1_dense": 0, "seed_oss": 0, "cohere2": 0, "jais2": 0, "cwm": 0,
    # differential attention (DiffLlama): written out over the gathered K/V
    "diffllama": 0,
    # names read from the code (CTRL), tables concatenated to the embedding (RoCBert), one routed expert (HunYuan-MoE)
    "ctrl": 0, "roc_bert": 0, "hunyuan_v1_moe": 0,
}

#: Families MAX registers natively, ported under a class it does not register (so `port` must write the decoder):
#: family -> the class name the twin's config is given.
RENAMED: dict[str, str] = {
    # 5 sliding : 1 full layers, a local rope base, QK-norm with (1 + w), query_pre_attn_scalar, no soft-caps
    "gemma3_text": "Gemma3RenamedForCausalLM",
    # 4 experts, top-2 of a softmax renormalised under norm_topk_prob, QK-norm: beside check-native of MAX's own
    # Qwen3-MoE on the same twin, both on the experts' CPU path
    "qwen3_moe": "Qwen3MoeRenamedForCausalLM",
}
#: Renamed rows whose note also gives check-native's answer for MAX's own registration on the same twin.
NATIVE_BESIDE = {"qwen3_moe"}

_rows: list[str] = []

#: The units a shard takes whole, in a fixed order: each family, each renamed family, then the two real models.
UNITS = [*sorted(FAMILIES), *(f"renamed:{family}" for family in sorted(RENAMED)), "smollm2", "gemma3"]


def in_shard(unit: str, spec: str = os.environ.get("PORT_MATRIX_SHARD", "1/1")) -> bool:
    """Whether ``unit`` belongs to shard ``spec`` (``i/N``: every N-th unit, from the i-th)."""
    index, count = (int(part) for part in spec.split("/"))
    if not 1 <= index <= count:
        raise pytest.UsageError(f"PORT_MATRIX_SHARD={spec}: want i/N with 1 <= i <= N")
    return UNITS.index(unit) % count == index - 1


def _outside_shard(unit: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not in_shard(unit), reason=f"{unit} is in another shard of PORT_MATRIX_SHARD")


def _taps(verify: dict | None) -> str:
    if not verify or not verify.get("per_tap"):
        return "-"
    worst: dict[str, float] = {}
    for row in verify["per_tap"]:
        worst[row["tap"]] = max(worst.get(row["tap"], 0.0), row["max_abs"])
    layers = {tap: value for tap, value in worst.items() if tap.startswith("layer_")}
    if len(layers) > 6:  # a real model: the worst block stands for the rest
        top = max(layers, key=layers.__getitem__)
        worst = {k: v for k, v in worst.items() if k not in layers} | {f"worst of {len(layers)} blocks ({top})": layers[top]}
    return ", ".join(f"{tap} {value:.1e}" for tap, value in worst.items())


def _row(name: str, payload: dict, code: int, seconds: float, note: str = "") -> str:
    plan = next((s["detail"] for s in payload.get("steps", []) if s["step"] == "plan"), "")
    donor = plan.split("closest native donor: ")[-1].split(";")[0] if "donor: " in plan else "-"
    applied = ", ".join(r["rule"] for r in payload.get("deltas", []) if r["status"] == "implemented") or "-"
    missing = ", ".join(m["rule"] for m in payload.get("missing", [])) or "-"
    verify = payload.get("verify") or {}
    verdict = {0: "PASS", 1: "PARTIAL" if payload.get("missing") else "FAIL"}.get(code, f"ERROR {code}")
    first = (verify.get("first_divergence") or {}).get("tap", "-")
    routing = (verify.get("routing_summary") or "-").replace("|", "/")
    return (f"| {name} | {donor} | {payload.get('mode') or '-'} | {_port_lines(payload)} | {applied} | {missing} | "
            f"{_taps(verify)} | {first} | {routing} | {verdict} | {seconds:.0f} | {note} |")


def _port_lines(payload: dict) -> str:
    """Lines of Python in the written package (weight table included)."""
    port = payload.get("port_dir")
    if not port or not Path(port).is_dir():
        return "-"
    return str(sum(path.read_text().count("\n") for path in Path(port).glob("*.py")))


@pytest.fixture(scope="module", autouse=True)
def results_table():
    yield
    header = [
        "# Port matrix", "",
        f"`make port-matrix` on {platform.machine()}, Python {platform.python_version()}: `import-model port` on each "
        "family's tiny twin (float32, CPU, tolerance rel. L2 1e-4), and on the real SmolLM2-135M and Gemma 3 270M "
        "weights (the same tolerance; Gemma 3 270M dequantized from its Q4_K_M GGUF).",
        "Max error per tap is the largest absolute difference over prompts, prefill and decode. "
        "PARTIAL: the port is written, the missing delta is named and verify shows where it diverges (exit 1).",
        "Time is the whole `port` run (plan, port, weight table, gates, verify); a row whose graph was not yet in "
        "MAX's compile cache includes its compile, 1.5 to 3 minutes (see docs/benchmarks.md).",
        "Mode: `donor` reuses MAX's own Llama3 graph with the family's switches set; `catalog` writes the decoder out; "
        "`native` is MAX's own registration, copied unchanged under a class MAX does not register (what "
        "`check-native` runs). Lines: Python in the written package, weight table included.", "",
        "Routing agreement (MoE rows): over every prompt, prefill and decode, the token-layers whose chosen experts "
        "are HF's, the worst MoE layer, and the mismatches that are near-ties in the router's scores or divergent.",
        "",
        "| family | closest native donor | mode | lines | deltas implemented | missing deltas | max abs error per tap "
        "| first divergence | routing agreement | verdict | time s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    RESULTS.write_text("\n".join(header + merged_rows(RESULTS, _rows)) + "\n")


@pytest.mark.matrix
@pytest.mark.parametrize("family", [family for family in sorted(FAMILIES) if in_shard(family)])
def test_family(family: str, tmp_path: Path) -> None:
    start = time.perf_counter()
    code, payload, stderr = run_port(family_twin_dir(family), tmp_path)
    note = "" if code in (0, 1) else (stderr.strip().splitlines() or [""])[-1][:120].replace("|", "/")
    _rows.append(_row(family, payload, code, time.perf_counter() - start, note))
    assert code == FAMILIES[family], stderr[-2000:]
    if code == 0:
        assert payload["verify"]["passed"]
    else:
        assert payload["missing"], "a non-zero port must name what is missing"


@pytest.mark.matrix
@pytest.mark.parametrize("family", [family for family in sorted(RENAMED) if in_shard(f"renamed:{family}")])
def test_native_family_under_a_renamed_class(family: str, tmp_path: Path) -> None:
    from tests.support.ports import renamed_checkpoint

    twin = renamed_checkpoint(family_twin_dir(family), tmp_path / "twin", RENAMED[family])
    start = time.perf_counter()
    code, payload, stderr = run_port(twin, tmp_path / "ports")
    seconds = time.perf_counter() - start
    note = ""
    if family in NATIVE_BESIDE:
        from tests.test_native_check import check_native

        _, native = check_native(family_twin_dir(family))
        note = (f"check-native on the same twin (MAX's own registration): {native['verdict']}, worst rel. L2 "
                f"{native['worst_rel_l2']:.1e}; routing {native['routing'] or '-'}").replace("|", "/")
        assert native["verdict"] == "verified", native["reason"]
    _rows.append(_row(f"{family} (class renamed, native in MAX)", payload, code, seconds, note))
    assert code == 0, stderr[-2000:]
    assert payload["mode"] == "catalog" and payload["verify"]["passed"]


@pytest.mark.matrix
@_outside_shard("smollm2")
def test_smollm2_real_weights_port_serve_and_chat(smollm2_dir: Path, tmp_path: Path) -> None:
    import httpx

    from import_model.verify.serve import MaxServer, ServeOptions
    from tests.support.smollm2 import smollm2_float32

    checkpoint = smollm2_float32("SmolCatalogForCausalLM")
    start = time.perf_counter()
    code, payload, stderr = run_port(checkpoint, tmp_path, "--weights", "full")
    seconds = time.perf_counter() - start
    verify = payload.get("verify") or {}
    texts = verify.get("greedy_text", [])
    answer = ""
    if code == 0:
        server = MaxServer(ServeOptions(model=str(checkpoint), port_dir=Path(payload["port_dir"]), device="cpu",
                                        max_length=256, max_batch_size=1, served_model_name="smol",
                                        log_path=tmp_path / "serve.log"))
        try:
            server.start()
            server.wait_ready()
            reply = httpx.post(f"{server.url}/v1/chat/completions", timeout=300, json={
                "model": "smol", "max_tokens": 12, "temperature": 0,
                "messages": [{"role": "user", "content": "What is the capital of France?"}]})
            answer = reply.json()["choices"][0]["message"]["content"]
        finally:
            server.stop()
    note = f"greedy text identical on {sum(t['match'] for t in texts)}/{len(texts)} prompts; served chat: {answer!r}"
    _rows.append(_row("SmolLM2-135M (real weights, class renamed)", payload, code, seconds, note.replace("|", "/")))
    assert code == 0, stderr[-2000:]
    assert verify["passed"] and texts and all(t["match"] and len(t["hf"]) >= 16 for t in texts)
    assert "Paris" in answer


# -- Gemma 3 270M, the second real model: MAX's own registration, the catalog port, the served port -------------

GEMMA3 = "Gemma 3 270M (real weights"
GEMMA3_CLASS = "Gemma3RenamedForCausalLM"


def _greedy_note(texts: list[dict]) -> str:
    return f"greedy text identical on {sum(t['match'] for t in texts)}/{len(texts)} prompts"


@pytest.mark.matrix
@_outside_shard("gemma3")
def test_gemma3_270m_native_registration_on_real_weights(gemma3_dir: Path) -> None:
    """What `import-model check-native` answers for MAX's own gemma3 registration on the real weights."""
    from tests.support.gemma3 import gemma3_float32, native_check

    checkpoint = gemma3_float32(bfloat16_norms=True)  # under Gemma3ForCausalLM, the class MAX registers
    start = time.perf_counter()
    code, answer = native_check(checkpoint)
    seconds = time.perf_counter() - start
    worst = answer["worst_rel_l2"]
    first = (answer["first_divergence"] or {}).get("tap", "-")
    note = (f"check-native --weights full: {answer['verdict']}, worst rel. L2 {worst:.1e}; MAX's own gemma3 graph "
            f"(float32 added to its bfloat16-only registration, norm weights kept bfloat16 as it declares them); "
            f"{_greedy_note(answer.get('greedy_text', []))}") if worst is not None else "; ".join(answer["notes"])
    _rows.append(f"| {GEMMA3}, MAX's own registration) | gemma3 | native | - | - | - | {_taps(answer)} | {first} | - | "
                 f"{answer['verdict'].upper()} | {seconds:.0f} | {note.replace('|', '/')} |")
    assert code == 0 and answer["verdict"] == "verified", answer["notes"]
    assert all(t["match"] for t in answer.get("greedy_text", []))  # check-native's answer may carry none


@pytest.fixture(scope="module")
def gemma3_port(gemma3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict, str, float]:
    """`import-model port --weights full` of Gemma 3 270M under a class MAX does not register, run once."""
    from tests.support.gemma3 import gemma3_float32

    checkpoint = gemma3_float32(GEMMA3_CLASS)
    start = time.perf_counter()
    code, payload, stderr = run_port(checkpoint, tmp_path_factory.mktemp("gemma3-port"), "--weights", "full",
                                     timeout=3000)
    return checkpoint, code, payload, stderr, time.perf_counter() - start


@pytest.mark.matrix
@_outside_shard("gemma3")
def test_gemma3_270m_real_weights_catalog_port(gemma3_port: tuple[Path, int, dict, str, float]) -> None:
    _, code, payload, stderr, seconds = gemma3_port
    verify = payload.get("verify") or {}
    oracle = next((n for n in verify.get("notes", []) if n.startswith("HF oracle:")), "")
    note = f"{_greedy_note(verify.get('greedy_text', []))}; {oracle}"
    _rows.append(_row(f"{GEMMA3}, class renamed)", payload, code, seconds, note.replace("|", "/")))
    assert code == 0, stderr[-2000:]
    assert payload["mode"] == "catalog" and {"qk_norm", "local_theta", "sliding_window", "attention_scale",
                                             "embedding_scale"} <= {r["rule"] for r in payload["deltas"]}
    texts = verify["greedy_text"]
    assert verify["passed"] and texts and all(t["match"] and len(t["hf"]) >= 16 for t in texts)


@pytest.mark.matrix
@_outside_shard("gemma3")
def test_gemma3_270m_served_chat_and_compare(gemma3_port: tuple[Path, int, dict, str, float], tmp_path: Path) -> None:
    """The written port under `import-model serve`, checked by `import-model compare` and asked a chat question."""
    import json
    import signal
    import subprocess
    import sys

    import httpx

    from import_model.procs import child_env
    from import_model.verify.oracle import oracle_messages
    from import_model.verify.serve import free_port

    checkpoint, code, payload, _, _ = gemma3_port
    assert code == 0
    tcp, name = free_port(), "gemma3"
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "import_model", "serve", str(checkpoint), "--port-dir",
                               payload["port_dir"], "--port", str(tcp), "--served-model-name", name,
                               "--log", str(tmp_path / "serve.log")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
                              start_new_session=True)
    try:
        said = []
        for line in server.stdout:  # the command says "ready after" once max serve answers its health check
            said.append(line)
            if "ready after" in line:
                break
        assert server.poll() is None, "".join(said)[-2000:]
        compared = subprocess.run([sys.executable, "-m", "import_model", "compare", str(checkpoint), "--slug", name,
                                   "--port", str(tcp), "--json"], capture_output=True, text=True, timeout=1200,
                                  env=child_env())
        result = json.loads(compared.stdout) if compared.stdout.strip().startswith("{") else {}
        reply = httpx.post(f"http://127.0.0.1:{tcp}/v1/chat/completions", timeout=600, json={
            "model": name, "max_tokens": 12, "temperature": 0,
            "messages": oracle_messages("What is the capital of France?")})
        answer = reply.json()["choices"][0]["message"]["content"]
    finally:  # SIGTERM: `serve` stops max serve's own process group on it (SIGINT may be ignored in a background job)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    seconds = time.perf_counter() - start
    diff = result.get("max_abs_logprob_diff", float("nan"))
    positions = result.get("positions", 0)
    note = (f"`compare`: max abs logprob diff {diff:.1e} over {positions} greedy positions, "
            f"{'PASS' if result.get('passed') else 'FAIL'}; served chat (one worked turn, then "
            f"'What is the capital of France?', 12 tokens): {answer!r}")
    _rows.append(f"| {GEMMA3}, served port) | gemma3 | catalog | {_port_lines(payload)} | served by `import-model serve` "
                 f"| - | - | - | - | {'PASS' if compared.returncode == 0 else 'FAIL'} | {seconds:.0f} | "
                 f"{note.replace('|', '/')} |")
    assert compared.returncode == 0, compared.stderr[-2000:] + compared.stdout[-2000:]
    assert result["passed"] and positions >= 8
    assert "Paris" in answer
