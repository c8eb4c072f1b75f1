"""The benchmark: one run, one Markdown table of speed and memory.

``make bench`` (``python bench/bench.py --write docs/benchmarks.md``) measures,
in this order and in one run, so every ratio compares numbers taken minutes
apart on the same machine:

- recon: wall time and peak memory of ``inspect``, ``list-keys``,
  ``check-walls`` and ``list-archs`` in a fresh process, and the bytes a local
  hub mirror sent while they read a virtual 70B, 30-shard checkpoint;
- verify: ``import-model verify`` on a 2-layer Llama twin with a native-copy
  port, MAX's compile cache empty (cold) then warm, compile and run split;
- port: ``import-model port`` on the Helium twin, cold then warm;
- speed: a port written by ``import-model port`` (donor mode, MAX's own
  Llama3 graph, for SmolLM2 and Helium; catalog mode, the decoder written out,
  for GPT-NeoX) against MAX's native llama3 on a checkpoint of the same shape (time to first token of a 128-token prompt, decode tokens/s over
  64 greedy steps through the KV cache, median of 7 runs after a warm-up, each
  model in its own process, measured port, native, native, port and averaged
  per side), on SmolLM2-135M's real weights under a class MAX
  does not register and on Helium and GPT-NeoX twins widened to SmolLM2's
  shape; then transformers eager against the MAX port on SmolLM2-135M;
- moe: decode tokens/s and time to first token of a mixture-of-experts port
  on its CPU path (a Mixtral twin at SmolLM2's shape with 8 experts of width
  768, top-2; catalog mode) beside a dense port of the same active width (the
  Helium twin at SmolLM2's shape, MLP width 1536 = 2 x 768; donor mode), same
  prompt, steps and ABBA order as speed. The CPU path runs every expert on
  every token (8 x 768 MLP columns where a token uses 2 x 768), so the ratio
  measures what verification on the CPU costs, not MoE serving speed, which
  MAX's grouped-matmul kernels give on a GPU.

Every measurement runs the real command or the real model in a child process;
memory is that child's peak resident set size.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.families import family_twin_dir, make_family_twin  # noqa: E402
from tests.support.hub_mirror import HubMirror, huge_llama_checkpoint  # noqa: E402
from tests.support.ports import native_port, renamed_checkpoint  # noqa: E402

from import_model.procs import child_env  # noqa: E402

RECON_COMMANDS = [
    ("inspect", ["inspect", "{model}"]),
    ("list-keys --summary", ["list-keys", "{model}", "--summary"]),
    ("check-walls", ["check-walls", "{model}"]),
    ("list-archs", ["list-archs"]),
]
PROMPT_TOKENS = 128
DECODE_STEPS = 64
RUNS = 7  # a port of MAX's own graph should measure 1.00; fewer, shorter runs left it within +-5% on 2 cores
#: SmolLM2-135M's shape, given to the widened twins (keys their config class has).
WIDE = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "head_dim": 64}
SECTIONS = ("recon", "verify", "port", "speed", "moe")
#: The MoE twin's expert layout at SmolLM2's shape: 8 experts of half SmolLM2's MLP width, 2 per token, so its active
#: MLP width equals the dense twin's 1536.
MOE_WIDE = {"intermediate_size": 768, "num_local_experts": 8, "num_experts_per_tok": 2}


@dataclass(frozen=True)
class Row:
    section: str
    measurement: str
    value: str
    detail: str


@dataclass(frozen=True)
class Finished:
    seconds: float
    peak_rss: int  # bytes
    stdout: str
    stderr: str
    returncode: int


#: Runs its arguments as a grandchild and writes the grandchild's peak RSS (KiB) to a file. Measuring from this
#: small process matters: Linux carries a forked child's inherited high-water mark across exec, so wait4 on a
#: child of this (large) script would report this script's memory, not the command's.
RSS_LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(argv: list[str], env: dict[str, str]) -> Finished:
    """Run ``argv`` to completion: wall time and the command's own peak RSS."""
    with tempfile.TemporaryDirectory() as scratch:
        rss = Path(scratch) / "rss"
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-S", "-c", RSS_LAUNCHER, str(rss), *argv], env=env,
                                capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        peak = int(rss.read_text()) * 1024 if rss.exists() else 0
    return Finished(seconds, peak, result.stdout, result.stderr, result.returncode)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "import_model", *args]


def checked(result: Finished, what: str) -> Finished:
    if result.returncode != 0:
        raise SystemExit(f"bench: {what} failed (exit {result.returncode}): {result.stderr.strip()[-800:]}")
    return result


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


# -- recon -------------------------------------------------------------------------------------------------------


def recon_rows(repeats: int) -> list[Row]:
    env = child_env() | {"HF_HUB_DISABLE_TELEMETRY": "1", "COLUMNS": "200"}
    model = str(family_twin_dir("helium"))
    rows = []
    for label, template in RECON_COMMANDS:
        argv = cli(*(a.format(model=model) for a in template))
        runs = [checked(run_child(argv, env), label) for _ in range(repeats)]
        where = "local twin" if "{model}" in template else "no model"
        rows.append(Row("recon", f"`{label}` ({where})", f"{statistics.median(r.seconds for r in runs):.2f} s",
                        f"median of {repeats}; peak RSS {human(max(r.peak_rss for r in runs))}"))
    huge = huge_llama_checkpoint()
    repo = "bench/llama-70b-virtual"
    with HubMirror({repo: huge.files}) as mirror, tempfile.TemporaryDirectory() as cache:
        hub_env = env | {"HF_ENDPOINT": mirror.endpoint, "HF_HOME": f"{cache}/hf", "IMPORT_MODEL_CACHE": f"{cache}/im"}
        for label, template in RECON_COMMANDS[:3]:
            for sub in ("hf", "im"):  # cold: every header is fetched again
                shutil.rmtree(f"{cache}/{sub}", ignore_errors=True)
            mirror.reset_counters()
            result = checked(run_child(cli(*(a.format(model=repo) for a in template)), hub_env), label)
            rows.append(Row("recon", f"`{label}` (hub mirror, cold caches)", f"{result.seconds:.2f} s",
                            f"{human(mirror.bytes_sent)} fetched of a {human(huge.total_bytes)} checkpoint; "
                            f"peak RSS {human(result.peak_rss)}"))
    return rows


# -- verify and port: cold and warm compile cache ----------------------------------------------------------------


def verify_rows(work: Path) -> list[Row]:
    arch = "BenchLlamaForCausalLM"
    checkpoint = renamed_checkpoint(family_twin_dir("llama"), work / "verify-ckpt", arch)
    port = native_port("llama3", work / "verify-ports", arch, "bench_llama")
    env = child_env() | {"XDG_CACHE_HOME": str(work / "verify-xdg"), "MAX_SERVE_DISABLE_TELEMETRY": "1"}
    rows = []
    for label in ("cold", "warm"):
        result = checked(run_child(cli("verify", str(checkpoint), "--port-dir", str(port), "--json"), env), "verify")
        payload = json.loads(result.stdout)
        timings = payload["timings"]
        verdict = "PASS" if payload["passed"] else "FAIL"
        rows.append(Row("verify", f"`verify` on a 2-layer Llama twin, {label} compile cache", f"{result.seconds:.1f} s",
                        f"MAX build (compile + load) {timings['max_build_s']:.1f} s, run and compare "
                        f"{timings['compare_s']:.2f} s (3 prompts of 6, 32 and 222 tokens, 3 decode steps each); "
                        f"{verdict}; peak RSS {human(result.peak_rss)}"))
    return rows


def run_port(model: Path, out_dir: Path, env: dict[str, str], *extra: str) -> tuple[Finished, dict]:
    result = checked(run_child(cli("port", str(model), "--output-dir", str(out_dir), "--force", "--yes", "--json", *extra),
                               env), f"port {model.name}")
    return result, json.loads(result.stdout)


def port_rows(work: Path) -> list[Row]:
    env = child_env() | {"XDG_CACHE_HOME": str(work / "port-xdg")}
    helium = work / "helium-twin"
    make_family_twin("helium", helium, force=True)
    rows = []
    for label in ("cold", "warm"):
        result, payload = run_port(helium, work / f"ports-{label}", env)
        verdict = "PASS" if payload["verify"]["passed"] else "FAIL"
        rows.append(Row("port", f"`port` on the Helium twin, {label} compile cache", f"{result.seconds:.1f} s",
                        f"plan, write, weight table, gates and verify; {verdict}; peak RSS {human(result.peak_rss)}"))
    return rows


# -- speed: ported vs native, HF vs MAX --------------------------------------------------------------------------


def prompt_ids() -> list[int]:
    return [(7 * i + 3) % 400 + 10 for i in range(PROMPT_TOKENS)]


def measure_max(checkpoint: str, port_dir: str | None) -> dict:
    """In a child process: build once, then a warm-up and RUNS x (prefill + DECODE_STEPS decode steps)."""
    from import_model.verify.max_runner import MaxPort

    port = MaxPort(Path(checkpoint), Path(port_dir) if port_dir else None, max_length=512, taps=False)
    ttft, rates = [], []
    for _ in range(RUNS + 1):
        steps = port.run(prompt_ids(), DECODE_STEPS)
        ttft.append(steps[0].seconds)
        rates.append(DECODE_STEPS / sum(s.seconds for s in steps[1:]))
    port.close()
    return {"ttft_s": statistics.median(ttft[1:]), "decode_tps": statistics.median(rates[1:])}


def measure_hf(checkpoint: str) -> dict:
    """In a child process: transformers eager, float32 on CPU, the same prompt and cached greedy steps."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    ids = torch.tensor([prompt_ids()])
    ttft, rates = [], []
    with torch.no_grad():
        for _ in range(RUNS + 1):
            start = time.perf_counter()
            out = model(ids, use_cache=True)
            ttft.append(time.perf_counter() - start)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            start = time.perf_counter()
            for _ in range(DECODE_STEPS):
                out = model(token, past_key_values=cache, use_cache=True)
                cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            rates.append(DECODE_STEPS / (time.perf_counter() - start))
    return {"ttft_s": statistics.median(ttft[1:]), "decode_tps": statistics.median(rates[1:])}


def measured(mode: str, checkpoint: Path, port_dir: Path | None = None) -> dict:
    argv = [sys.executable, __file__, mode, str(checkpoint), str(port_dir or "")]
    result = checked(run_child(argv, child_env()), f"measuring {checkpoint.name}")
    return json.loads(result.stdout.strip().splitlines()[-1]) | {"peak_rss": result.peak_rss}


def abba(first: Callable[[], dict], second: Callable[[], dict]) -> tuple[dict, dict]:
    """Measure A, B, B, A and average each side: a machine that speeds up or slows down during the run
    (thermal state, page cache) then shifts both sides alike instead of favouring one."""
    a1, b1, b2, a2 = first(), second(), second(), first()

    def mean(x: dict, y: dict) -> dict:
        return {k: (x[k] + y[k]) / 2 if k != "peak_rss" else max(x[k], y[k]) for k in x}

    return mean(a1, a2), mean(b1, b2)


def wide_twin(family: str, target: Path, extra: dict | None = None) -> Path:
    """The family's twin config at SmolLM2's shape (and ``extra``), seeded random weights, the twin's tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    small = target.with_name(target.name + "-small")
    make_family_twin(family, small, force=True)
    config = AutoConfig.from_pretrained(str(small))
    for key, value in (WIDE | (extra or {})).items():
        if hasattr(config, key):
            setattr(config, key, value)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(str(target))
    for path in small.iterdir():
        if "token" in path.name or path.name == "special_tokens_map.json":
            shutil.copy(path, target / path.name)
    return target


def speed_rows(work: Path) -> list[Row]:
    from tests.support.smollm2 import smollm2_float32

    smol = smollm2_float32("SmolBenchForCausalLM")
    _, smol_port = run_port(smol, work / "smol-ports", child_env(), "--no-verify")
    pairs = [(f"SmolLM2-135M real weights, Llama in all but its class name ({smol_port['mode']} mode)", smol,
              Path(smol_port["port_dir"]), renamed_checkpoint(smol, work / "smol-native", "LlamaForCausalLM"))]
    llama_wide = wide_twin("llama", work / "llama-wide")
    for family in ("helium", "gpt_neox"):
        twin = wide_twin(family, work / f"{family}-wide")
        _, ported = run_port(twin, work / f"{family}-ports", child_env(), "--no-verify")
        pairs.append((f"{family} twin at SmolLM2's shape ({ported['mode']} mode)", twin, Path(ported["port_dir"]),
                      llama_wide))
    rows, smol_figures = [], {}
    for name, checkpoint, port_dir, native_checkpoint in pairs:
        port, native = abba(partial(measured, "--measure", checkpoint, port_dir),
                            partial(measured, "--measure", native_checkpoint))
        smol_figures = smol_figures or port
        rows.append(Row("speed", f"decode tok/s, port / native llama3: {name}",
                        f"{port['decode_tps'] / native['decode_tps']:.2f}",
                        f"port {port['decode_tps']:.1f} vs native {native['decode_tps']:.1f} tok/s; "
                        f"peak RSS {human(port['peak_rss'])} vs {human(native['peak_rss'])}"))
        rows.append(Row("speed", f"time to first token, native / port: {name}",
                        f"{native['ttft_s'] / port['ttft_s']:.2f}",
                        f"port {port['ttft_s'] * 1000:.0f} ms vs native {native['ttft_s'] * 1000:.0f} ms "
                        f"({PROMPT_TOKENS}-token prompt)"))
    hf = measured("--measure-hf", smol)
    rows.append(Row("speed", "decode tok/s, MAX port / transformers eager: SmolLM2-135M",
                    f"{smol_figures['decode_tps'] / hf['decode_tps']:.2f}",
                    f"MAX {smol_figures['decode_tps']:.1f} vs HF {hf['decode_tps']:.1f} tok/s; TTFT "
                    f"{smol_figures['ttft_s'] * 1000:.0f} vs {hf['ttft_s'] * 1000:.0f} ms; peak RSS "
                    f"{human(smol_figures['peak_rss'])} vs {human(hf['peak_rss'])}"))
    return rows


def moe_rows(work: Path) -> list[Row]:
    """The MoE port's CPU path beside a dense port of the same active width (see the module docstring)."""
    moe = wide_twin("mixtral", work / "mixtral-wide", MOE_WIDE)
    dense = wide_twin("helium", work / "helium-wide-dense")
    _, moe_port = run_port(moe, work / "mixtral-ports", child_env(), "--no-verify")
    _, dense_port = run_port(dense, work / "helium-dense-ports", child_env(), "--no-verify")
    experts, top_k, width = (MOE_WIDE[k] for k in ("num_local_experts", "num_experts_per_tok", "intermediate_size"))
    routed, plain = abba(partial(measured, "--measure", moe, Path(moe_port["port_dir"])),
                         partial(measured, "--measure", dense, Path(dense_port["port_dir"])))
    name = (f"Mixtral twin, {experts} experts x {width} top-{top_k}, CPU path ({moe_port['mode']} mode) / Helium twin, "
            f"MLP {top_k * width} ({dense_port['mode']} mode), both at SmolLM2's shape")
    return [
        Row("moe", f"decode tok/s, MoE port / dense port of the same active width: {name}",
            f"{routed['decode_tps'] / plain['decode_tps']:.2f}",
            f"MoE {routed['decode_tps']:.1f} vs dense {plain['decode_tps']:.1f} tok/s; every expert runs on every "
            f"token ({experts} x {width} MLP columns computed, {top_k} x {width} used); peak RSS "
            f"{human(routed['peak_rss'])} vs {human(plain['peak_rss'])}"),
        Row("moe", f"time to first token, dense / MoE port: {name}", f"{plain['ttft_s'] / routed['ttft_s']:.2f}",
            f"MoE {routed['ttft_s'] * 1000:.0f} ms vs dense {plain['ttft_s'] * 1000:.0f} ms "
            f"({PROMPT_TOKENS}-token prompt)"),
    ]


# -- report ------------------------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    from importlib.metadata import version

    return (f"{cpu}, {os.cpu_count()} cores, {human(memory)} RAM, {platform.system()} {platform.machine()}; "
            f"Python {platform.python_version()}, max {version('max')}, transformers {version('transformers')}, "
            f"torch {version('torch')}; float32 on CPU")


def table(rows: list[Row]) -> str:
    lines = ["| section | measurement | value | detail |", "|---|---|---|---|"]
    lines += [f"| {r.section} | {r.measurement} | {r.value} | {r.detail} |" for r in rows]
    return "\n".join(lines)


def document(rows: list[Row], machine_line: str, minutes: float) -> str:
    return "\n".join([
        "# Benchmarks", "",
        "Written by `make bench` (`python bench/bench.py --write docs/benchmarks.md`); every figure below comes "
        f"from one run of {minutes:.0f} minutes, so each ratio compares numbers measured on the same machine "
        "minutes apart. What each row measures is in the script's docstring.", "",
        f"Machine: {machine_line}. Run of {datetime.date.today().isoformat()}.", "",
        table(rows), "",
        "Ratios above 1 favour the port (or MAX). Differences of a few percent are within this machine's "
        "run-to-run noise. The widened twins keep the twin's 512-token vocabulary, so their head is small; "
        "SmolLM2 has its real 49,152-token head. Cold means MAX's compile cache (under `XDG_CACHE_HOME`) "
        "starts empty; warm reruns against it.", "",
        *([] if not any(r.section == "moe" for r in rows) else [
            "The `moe` rows measure what verifying a mixture of experts on the CPU costs: the port's CPU path runs "
            "every expert on every token, so it computes 4x the MLP columns a token uses here. They are not MoE "
            "serving speed, which MAX's grouped-matmul kernels give on a GPU.", ""]),
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per recon command (median)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--write", type=Path, metavar="FILE", help="also write the Markdown document to FILE")
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="import-model-bench-"))
    sections = {"recon": lambda: recon_rows(args.repeats), "verify": lambda: verify_rows(work),
                "port": lambda: port_rows(work), "speed": lambda: speed_rows(work), "moe": lambda: moe_rows(work)}
    rows: list[Row] = []
    try:
        for name in args.only or SECTIONS:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            rows += sections[name]()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    if args.write:
        text = document(rows, machine(), (time.perf_counter() - started) / 60)
        temp = args.write.with_suffix(".tmp")
        temp.write_text(text)
        temp.replace(args.write)
        print(f"bench: wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        print(json.dumps(measure_max(sys.argv[2], sys.argv[3] or None)))
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "--measure-hf":
        print(json.dumps(measure_hf(sys.argv[2])))
        sys.exit(0)
    sys.exit(main())
