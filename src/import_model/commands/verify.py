"""``import-model verify``: parity of a port against the HF reference, layer by layer, on the CPU."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from import_model import report
from import_model.arg_types import float_in, int_in, nonblank, output_dir, port_directory
from import_model.errors import UserError
from import_model.source import load_config, open_source, shown, user_path

#: Most greedy decode steps after prefill.
MAX_DECODE_STEPS = 64


def add_verify_parser(sub: Any, command: Any) -> None:
    p = command(sub, "verify", "prove a port computes what HF computes: taps per layer, prefill and decode (exit 0/1)")
    p.add_argument("model", metavar="MODEL", help="hub ID or local checkpoint directory")
    p.add_argument("--revision", type=nonblank, default=None, help="hub branch, tag or commit (hub models only)")
    p.add_argument("--port-dir", required=True, metavar="DIR", help="the port package: <output_dir>/<slug>")
    p.add_argument("--weights", choices=["twin", "full"], default="twin",
                   help="twin (default): a tiny seeded twin of MODEL (MODEL itself if it is a twin); "
                        "full: MODEL's real weights (local directory)")
    p.add_argument("--prompt", action="append", type=nonblank, metavar="TEXT",
                   help="prompt to check (repeatable; default: three)")
    add_comparison_arguments(p)
    p.add_argument("--report-dir", metavar="DIR", help="where report.md/.json/.svg go (default: beside the port)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let the HF reference import modeling code shipped in the checkpoint (auto_map); that "
                        "code runs with your rights, so read it first")
    p.add_argument("--json", action="store_true", help="print the JSON report")


def add_comparison_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a tap-by-tap comparison with the HF reference (verify's and check-native's)."""
    p.add_argument("--decode-steps", type=int_in(0, MAX_DECODE_STEPS), default=3, metavar="N",
                   help=f"greedy decode steps after prefill (default 3, at most {MAX_DECODE_STEPS})")
    p.add_argument("--rel-tol", type=float_in(0.0, 1.0), default=None, metavar="T",
                   help="relative L2 tolerance per tap (default 1e-4; from 0 to 1)")


#: Set in the child that does the work; the parent only watches it (a crash inside MAX kills the child, not us).
CHILD_FLAG = "IMPORT_MODEL_VERIFY_CHILD"


def cmd_verify(args: argparse.Namespace) -> int:
    import os

    port_dir, report_dir = _checked_paths(args)  # before a child starts or a twin is built
    if os.environ.get(CHILD_FLAG) != "1":
        return _supervise(args, port_dir, report_dir)
    return _verify_here(args, port_dir, report_dir)


def _checked_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The port directory (it must be one) and the report directory (given or beside the port), both refusable."""
    port_dir = port_directory(args.port_dir)
    if args.report_dir is not None:
        return port_dir, output_dir(args.report_dir, "--report-dir")
    return port_dir, port_dir.parent / f"verify-{port_dir.name}"


def child_argv(args: argparse.Namespace) -> list[str]:
    """The same verify, as a command line for the child process."""
    argv = ["verify", args.model, "--port-dir", str(args.port_dir), "--weights", args.weights,
            "--decode-steps", str(args.decode_steps)]
    for flag, value in (("--revision", args.revision), ("--rel-tol", args.rel_tol), ("--report-dir", args.report_dir)):
        if value is not None:
            argv += [flag, str(value)]
    for prompt in args.prompt or []:
        argv += ["--prompt", prompt]
    argv += ["--trust-remote-code"] if args.trust_remote_code else []
    return argv + (["--json"] if args.json else [])


def _supervise(args: argparse.Namespace, port_dir: Path, report_dir: Path) -> int:
    """Run the verify in a child process; a signal death inside MAX becomes one line, a report and exit 2."""
    import signal
    import subprocess
    import sys

    from import_model.procs import child_env

    proc = subprocess.run([sys.executable, "-m", "import_model", *child_argv(args)], env=child_env(**{CHILD_FLAG: "1"}),
                          check=False)
    if proc.returncode >= 0:
        return proc.returncode
    try:
        name = signal.Signals(-proc.returncode).name
    except ValueError:
        name = f"signal {-proc.returncode}"
    if -proc.returncode in (signal.SIGINT, signal.SIGTERM):
        raise UserError(f"verify was interrupted ({name}); nothing was compared")
    details = (f"The verify process was killed by {name} while MAX built or ran the port's graph. "
               "This is a crash inside MAX's compiler or runtime, not a parity result: try the port with "
               "`max serve --devices cpu` to see MAX's own output, and check the port's shapes and dtypes.")
    paths = _write_reports({"architecture": "?", "checkpoint": args.model, "port_dir": str(port_dir), "passed": False,
                            "error": {"step": "running MAX", "details": details}}, report_dir)
    raise UserError(f"MAX crashed ({name}) while building or running the port; no parity result. "
                    f"Report: {paths['markdown']}")


def _verify_here(args: argparse.Namespace, port_dir: Path, report_dir: Path) -> int:
    from import_model.verify import parity
    from import_model.verify.engine import VerifyOptions, preflight, run_verify
    from import_model.verify.max_runner import MaxBuildError
    from import_model.verify.report_files import worst_by_tap

    checkpoint = _checkpoint_for(args)
    options = VerifyOptions(decode_steps=args.decode_steps, trust_remote_code=args.trust_remote_code)
    if args.prompt:
        options.prompts = tuple(args.prompt)
    if args.rel_tol is not None:
        options.rel_l2 = args.rel_tol
    preflight(checkpoint, port_dir)
    notes = []
    if args.weights == "full":
        from import_model.verify.oracle import ORACLE_PROMPTS

        notes = _oracle_first(checkpoint, args.trust_remote_code)
        options.greedy_prompts = ORACLE_PROMPTS
    try:
        result = run_verify(checkpoint, port_dir, options, progress=report.progress)
    except MaxBuildError as exc:
        paths = _write_reports({"architecture": "?", "checkpoint": str(checkpoint), "port_dir": str(port_dir),
                                "passed": False, "error": {"step": exc.step, "details": exc.details}}, report_dir)
        raise UserError(f"{exc.message}; report: {paths['markdown']}") from None
    payload = result.as_dict()
    payload["notes"] = notes + payload["notes"]
    payload["per_tap"] = worst_by_tap(result.verdict.diffs, result.tap_order)
    payload["tolerance"] = {"rel_l2": options.rel_l2, "min_cosine": parity.DEFAULT_MIN_COSINE}
    paths = _write_reports(payload, report_dir)
    if args.json:
        report.emit_json({k: v for k, v in payload.items() if k != "diffs"})
    else:
        _print_summary(payload, paths)
    return 0 if result.verdict.passed else 1


def _write_reports(payload: dict[str, Any], report_dir: Path) -> dict[str, Path]:
    """report.md/.json/.svg in ``report_dir``; a write the path checks could not foresee (disk full) is one line."""
    from import_model.verify.report_files import write_reports

    try:
        return write_reports(payload, report_dir)
    except OSError as exc:
        raise UserError(f"could not write the verify report into {shown(str(report_dir))} "
                        f"({exc.strerror or exc}); choose another --report-dir") from None


def _checkpoint_for(args: argparse.Namespace) -> Path:
    source = open_source(args.model, args.revision)
    if args.weights == "full":
        if source.kind != "local":
            raise UserError("--weights full needs the checkpoint on disk: download it (hf download) and pass the folder")
        return user_path(args.model, "MODEL").resolve()
    from import_model.verify.twin import twin_of

    return twin_of(source, load_config(source), report.progress)


def _oracle_first(checkpoint: Path, trust_remote_code: bool = False) -> list[str]:
    from transformers import AutoTokenizer

    from import_model.verify.hf_reference import HFReference
    from import_model.verify.oracle import check_oracle

    report.progress("checking the HF oracle on the model's own prompt format first")
    check = check_oracle(HFReference.load(checkpoint, trust_remote_code),
                         AutoTokenizer.from_pretrained(str(checkpoint), trust_remote_code=trust_remote_code))
    if not check.sane:
        raise UserError("the HF reference itself looks broken (" + "; ".join(check.problems)
                        + "): fix the checkpoint, tokenizer or chat template before comparing a port against it",
                        exit_code=1)
    return [f"HF oracle: {s['prompt']!r} -> {s['text']!r}" for s in check.samples]


def _print_summary(payload: dict[str, Any], paths: dict[str, Path]) -> None:
    passed = payload["passed"]
    report.heading(f"verify {payload['architecture']}: {'PASS' if passed else 'FAIL'}")
    report.table(None, ["tap", "phase", "max abs diff", "rel. L2", "min cosine", "ok"], [
        (r["tap"], r["phase"], f"{r['max_abs']:.2e}", f"{r['rel_l2']:.2e}", f"{r['cosine']:.6f}",
         "yes" if r["ok"] else "NO") for r in payload["per_tap"]
    ])
    first = payload.get("first_divergence")
    if first:
        where = "prefill" if first["step"] == 0 else f"decode step {first['step']}"
        report.line(f"first divergence: {first['tap']} at {where} (prompt {first['prompt'] + 1})")
    for prompt in payload["prompts"]:
        same = prompt["hf_greedy"] == prompt["max_greedy"]
        report.line(f"greedy {'match' if same else 'MISMATCH'}: HF {prompt['hf_greedy']} MAX {prompt['max_greedy']}")
    if payload.get("routing_summary"):
        report.line(f"routing: {payload['routing_summary']}")
    for row in payload.get("greedy_text", []):
        report.line(f"greedy text {'match' if row['match'] else 'MISMATCH'} on {row['prompt']!r}: "
                    f"HF {row['hf_text']!r} / MAX {row['max_text']!r}")
    report.line(f"report: {paths['markdown']}")
