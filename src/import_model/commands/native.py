"""``import-model check-native``: does MAX's own registration compute what transformers computes for this config?

Exit 0 verified, 1 diverges (or the checkpoint holds weights MAX's graph never loads), 2 cannot run or bad input.
The work runs in a child process, as verify's does: a crash inside MAX's compiler or runtime becomes a
``cannot_run`` answer, not a dead command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from import_model import report
from import_model.arg_types import nonblank
from import_model.commands.verify import add_comparison_arguments
from import_model.errors import UserError

#: Set in the child that does the work.
CHILD_FLAG = "IMPORT_MODEL_CHECK_NATIVE_CHILD"


def add_check_native_parser(sub: Any, command: Any) -> None:
    p = command(sub, "check-native", "parity of MAX's own registration on this exact config, float32 on the CPU "
                                     "(0 verified, 1 diverges, 2 cannot run)")
    p.add_argument("model", metavar="MODEL", help="hub ID, local checkpoint directory or twin")
    p.add_argument("--revision", type=nonblank, default=None, help="hub branch, tag or commit (hub models only)")
    p.add_argument("--weights", choices=["twin", "full"], default="twin",
                   help="twin (default): a tiny seeded twin of MODEL (MODEL itself if it is a twin); "
                        "full: MODEL's real weights (local directory), after a sanity check of the HF reference")
    p.add_argument("--prompt", action="append", type=nonblank, metavar="TEXT",
                   help="prompt to check (repeatable; default: three, one longer than a twin's sliding window)")
    add_comparison_arguments(p)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def cmd_check_native(args: argparse.Namespace) -> int:
    import os

    if os.environ.get(CHILD_FLAG) == "1":
        return _check_here(args)
    source, config, arch = native_target(args.model, args.revision)
    if args.weights == "full" and source.kind != "local":
        raise UserError("--weights full needs the checkpoint on disk: download it (hf download) and pass the folder")
    result = run_in_child(child_argv(args), source.display, arch)
    if isinstance(result, int):  # the child refused the input and said why
        return result
    if args.json:
        report.emit_json(result.as_dict())
    else:
        print_check(result)
    return result.exit_code


def native_target(model: str, revision: str | None) -> tuple[Any, dict[str, Any], Any]:
    """The source, its config and MAX's registration of its class; a class MAX does not register is refused."""
    from import_model.plan.planner import architecture_of
    from import_model.recon import registry
    from import_model.source import load_config, open_source

    source = open_source(model, revision)
    config = load_config(source)
    architecture = architecture_of(config)
    if architecture is None:
        raise UserError(f"{source.display}: config.json declares no usable architectures[0]; nothing to check")
    natives = registry.find_native(architecture)
    other_tasks = sorted({a.task_label for a in registry.find_native(architecture, text_only=False)})
    if not natives and other_tasks:
        raise UserError(f"MAX registers {architecture} for {', '.join(other_tasks)}; check-native compares "
                        "text-generation graphs only")
    if not natives:
        raise UserError(f"MAX does not register {architecture}: there is no native graph to check; a port is needed "
                        "(import-model plan, then port)")
    return source, config, natives[0]


def child_argv(args: argparse.Namespace) -> list[str]:
    argv = ["check-native", args.model, "--weights", args.weights, "--decode-steps", str(args.decode_steps), "--json"]
    for flag, value in (("--revision", args.revision), ("--rel-tol", args.rel_tol)):
        if value is not None:
            argv += [flag, str(value)]
    for prompt in args.prompt or []:
        argv += ["--prompt", prompt]
    return argv


def run_in_child(argv: list[str], model: str, arch: Any) -> Any:
    """Run ``import-model <argv>`` (a check-native with --json) in a child: its answer, ``cannot_run`` when MAX
    crashed it, or the child's exit code when it refused the input (it has printed its one line on stderr already).

    The child's progress lines reach stderr as it writes them.
    """
    import signal
    import subprocess
    import sys

    from import_model.procs import child_env
    from import_model.verify.native_check import CANNOT_RUN, NativeCheck, from_dict

    proc = subprocess.run([sys.executable, "-m", "import_model", *argv], env=child_env(**{CHILD_FLAG: "1"}),
                          stdout=subprocess.PIPE, text=True, check=False)
    text = proc.stdout.strip()
    if proc.returncode >= 0 and text.startswith("{"):
        return from_dict(json.loads(text))
    if proc.returncode >= 0:
        return proc.returncode if proc.returncode in (1, 2) else 2
    try:
        name = signal.Signals(-proc.returncode).name
    except ValueError:
        name = f"signal {-proc.returncode}"
    if -proc.returncode in (signal.SIGINT, signal.SIGTERM):
        raise UserError(f"check-native was interrupted ({name}); nothing was compared")
    return NativeCheck(model, arch.name, arch.slug, argv[argv.index("--weights") + 1], CANNOT_RUN,
                       f"MAX crashed ({name}) while building or running its own graph on the CPU (its output is "
                       "above): a crash inside MAX, not a parity result")


def _check_here(args: argparse.Namespace) -> int:
    from import_model.verify.engine import VerifyOptions
    from import_model.verify.native_check import CANNOT_RUN, NativeCheck, check_native

    source, config, arch = native_target(args.model, args.revision)
    options = VerifyOptions(decode_steps=args.decode_steps)
    if args.prompt:
        options.prompts = tuple(args.prompt)
    if args.rel_tol is not None:
        options.rel_l2 = args.rel_tol
    checkpoint = _checkpoint(args, source, config)
    result = None
    if args.weights == "full":
        from import_model.commands.verify import _oracle_first
        from import_model.verify.oracle import ORACLE_PROMPTS

        try:
            _oracle_first(checkpoint)
        except UserError as exc:
            result = NativeCheck(source.display, arch.name, arch.slug, args.weights, CANNOT_RUN,
                                 f"no trustworthy reference: {exc.message}")
        options.greedy_prompts = ORACLE_PROMPTS
    if result is None:
        result = check_native(checkpoint, config, arch, options, model=source.display, weights=args.weights,
                              progress=report.progress)
    report.emit_json(result.as_dict())
    return result.exit_code


def _checkpoint(args: argparse.Namespace, source: Any, config: dict[str, Any]) -> Path:
    from import_model.source import user_path
    from import_model.verify.twin import twin_of

    if args.weights == "full":
        return user_path(args.model, "MODEL").resolve()
    return twin_of(source, config, report.progress)


def print_check(result: Any) -> None:
    """The answer as the other commands print theirs: a heading, the reason, the evidence."""
    title = {"verified": "VERIFIED", "diverges": "DIVERGES", "cannot_run": "CANNOT RUN"}[result.verdict]
    on = "the real weights" if result.weights == "full" else "a tiny twin"
    report.heading(f"{result.model}: MAX's native {result.slug} ({result.architecture}) {title} on {on} "
                   f"(exit {result.exit_code})")
    report.line(result.reason)
    if result.unread_keys:
        report.table("Config keys MAX's native code never reads", ["key", "value", "what it does in transformers"],
                     [(k.key, json.dumps(k.value), k.note) for k in result.unread_keys])
    if result.unread_weights:
        from import_model.verify.native_check import SHOWN_WEIGHTS

        shown = list(result.unread_weights[:SHOWN_WEIGHTS])
        more = len(result.unread_weights) - len(shown)
        report.line(f"checkpoint weights MAX's graph never loads ({len(result.unread_weights)}): "
                    + ", ".join(shown) + (f" and {more} more" if more > 0 else ""))
    if result.per_tap:
        report.table(None, ["tap", "phase", "max abs diff", "rel. L2", "min cosine", "ok"], [
            (r["tap"], r["phase"], f"{r['max_abs']:.2e}", f"{r['rel_l2']:.2e}", f"{r['cosine']:.6f}",
             "yes" if r["ok"] else "NO") for r in result.per_tap
        ])
    if result.routing:
        report.line(f"routing against HF: {result.routing}")
    for row in result.greedy_text:
        report.line(f"greedy text {'match' if row['match'] else 'MISMATCH'} on {row['prompt']!r}: "
                    f"HF {row['hf_text']!r} / MAX {row['max_text']!r}")
    for text in result.explanations:
        report.line(f"  known difference: {text}", style="yellow")
    for note in result.notes:
        report.line(f"  note: {note}")
    if result.details:
        report.line("MAX said: " + result.details.strip().splitlines()[-1][:400])
    report.line(_next_step(result))


def _next_step(result: Any) -> str:
    from import_model.recon.registry import serve_command

    if result.verdict == "verified":
        return f"no port needed: {serve_command(result.model)}"
    if result.verdict == "diverges":
        return f"a port is needed: import-model port {result.model} (the catalog writes it under the same class)"
    return "no verdict on this machine: check it where MAX's kernels run (a GPU), or port it"
