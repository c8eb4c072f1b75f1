"""Recon benchmark: wall time of each Phase 1 command, and bytes fetched from a hub mirror.

Prints one Markdown table. Run with ``make bench`` (or ``python bench/recon_bench.py``).
Times are medians of several runs of the real CLI in a fresh process, the way a
user runs it; the hub rows count the body bytes the local mirror actually sent
while the commands read a virtual 70B-parameter, 30-shard checkpoint.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.families import family_twin_dir  # noqa: E402
from tests.support.hub_mirror import HubMirror, huge_llama_checkpoint  # noqa: E402

COMMANDS = [
    ("inspect", ["inspect", "{model}"]),
    ("list-keys --summary", ["list-keys", "{model}", "--summary"]),
    ("check-walls", ["check-walls", "{model}"]),
    ("list-archs", ["list-archs"]),
]


def time_command(args: list[str], env: dict[str, str], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "import_model", *args], env=env, capture_output=True, check=False)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    env = dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1", COLUMNS="200")
    model = str(family_twin_dir("helium"))
    rows = []
    for label, template in COMMANDS:
        argv = [a.format(model=model) for a in template]
        where = "local twin" if "{model}" in template else "no model"
        rows.append((f"`{label}` ({where})", f"{time_command(argv, env, args.repeats):.2f} s", "-", "-"))

    huge = huge_llama_checkpoint()
    with HubMirror({"bench/llama-70b-virtual": huge.files}) as mirror, tempfile.TemporaryDirectory() as cache:
        hub_env = dict(env, HF_ENDPOINT=mirror.endpoint, HF_HOME=f"{cache}/hf", IMPORT_MODEL_CACHE=f"{cache}/im")
        for label, template in COMMANDS[:3]:
            argv = [a.format(model="bench/llama-70b-virtual") for a in template]
            mirror.reset_counters()
            # cold: fresh caches each time, so every header is fetched again
            for sub in ("hf", "im"):
                subprocess.run(["rm", "-rf", f"{cache}/{sub}"], check=True)
            seconds = time_command(argv, hub_env, 1)
            rows.append((f"`{label}` (hub mirror, cold)", f"{seconds:.2f} s", human(mirror.bytes_sent),
                         human(huge.total_bytes)))

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| command | median wall time | bytes fetched | checkpoint size |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
