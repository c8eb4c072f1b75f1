"""``import-model serve`` (run a port under ``max serve``) and ``import-model compare`` (served logprobs vs HF)."""

from __future__ import annotations

import argparse
import math
import signal
from pathlib import Path
from typing import Any

from import_model import report
from import_model.errors import UserError

#: CPU serving defaults: a short context and one sequence keep the KV cache small on the host.
CPU_MAX_LENGTH = 512
CPU_MAX_BATCH_SIZE = 1


def add_parsers(sub: Any, command: Any) -> None:
    p = command(sub, "compare", "per-position logprobs of a running `max serve` vs the HF reference (exit 0/1/2)")
    p.add_argument("model", metavar="MODEL", help="the HF checkpoint the server runs: local directory or hub ID")
    p.add_argument("--revision", default=None, help="hub branch, tag or commit (hub models only)")
    p.add_argument("--slug", default=None, metavar="NAME",
                   help="model name the server was started with (default: the one it lists under /v1/models)")
    p.add_argument("--port", type=int, required=True, metavar="N", help="port of the running max serve")
    p.add_argument("--host", default="127.0.0.1", help="host of the running max serve (default 127.0.0.1)")
    p.add_argument("--prompt", action="append", metavar="TEXT", help="prompt to complete (repeatable; default: two)")
    p.add_argument("--tokens", type=int, default=8, metavar="K", help="greedy tokens per prompt (default 8)")
    p.add_argument("--tolerance", "--tol", type=float, default=1e-3, metavar="T",
                   help="largest |logprob diff| that still matches (default 1e-3, for float32)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds per request (default 300)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command(sub, "serve", "start `max serve` with a port's custom architecture and keep it in the foreground")
    p.add_argument("model", metavar="MODEL", help="checkpoint to serve: local directory or hub ID")
    p.add_argument("--port-dir", required=True, metavar="DIR", help="the port package: <output_dir>/<slug>")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="cpu (default) or gpu")
    p.add_argument("--encoding", default=None, metavar="ENC",
                   help="--quantization-encoding (default: float32 on cpu, bfloat16 on gpu)")
    p.add_argument("--port", type=int, default=None, metavar="N", help="HTTP port (default: a free one)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--max-length", type=int, default=None, metavar="L",
                   help=f"longest sequence (default on cpu: {CPU_MAX_LENGTH}; on gpu: MAX's default)")
    p.add_argument("--max-batch-size", type=int, default=None, metavar="B",
                   help=f"largest batch (default on cpu: {CPU_MAX_BATCH_SIZE}; on gpu: MAX's default)")
    p.add_argument("--served-model-name", default=None, metavar="NAME",
                   help="name clients request (default: the port's slug, the directory name)")
    p.add_argument("--log", default=None, metavar="FILE", help="server log (default: under the import-model cache)")
    p.add_argument("--timeout", type=float, default=900.0, metavar="S",
                   help="seconds to wait for the server to be ready (default 900; a cold CPU compile takes minutes)")


# -- compare ------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from import_model.verify.compare import DEFAULT_PROMPTS, ServerClient, run_compare

    _check_compare_args(args)
    client = ServerClient(args.host, args.port, timeout=args.timeout)
    try:
        result = run_compare(args.model, args.revision, client, args.slug, tuple(args.prompt or DEFAULT_PROMPTS),
                             args.tokens, args.tolerance, progress=report.progress)
    finally:
        client.close()
    if args.json:
        report.emit_json(result.as_dict())
    else:
        _print_compare(result)
    return 0 if result.passed else 1


def _check_compare_args(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a TCP port")
    if not 1 <= args.tokens <= 512:
        raise UserError(f"--tokens {args.tokens}: choose between 1 and 512")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise UserError(f"--tolerance {args.tolerance}: must be a finite number >= 0")
    if args.prompt and any(not p for p in args.prompt):
        raise UserError("--prompt: an empty prompt cannot be compared")


def _print_compare(result: Any) -> None:
    for number, prompt in enumerate(result.prompts, 1):
        report.table(f"prompt {number}: {prompt.prompt!r} -> {prompt.text!r}",
                     ["pos", "MAX token", "MAX logprob", "HF logprob", "|diff|", "HF top-1", "match"],
                     [(p.index, _token(p.token, p.token_id), f"{p.max_logprob:.6f}", f"{p.hf_logprob:.6f}",
                       f"{p.diff:.2e}", _token(p.hf_top1, p.hf_top1_id), "yes" if p.ok else "NO")
                      for p in prompt.positions])
        for note in prompt.notes:
            report.line(f"  note: {note}")
        report.table(f"HF layers, prompt {number}: {len(prompt.prompt_ids)}+{len(prompt.positions)} positions",
                     ["tap", "mean", "std", "max |x|"],
                     [(s.tap, f"{s.mean:+.4e}", f"{s.std:.4e}", f"{s.max_abs:.4e}") for s in prompt.layer_stats])
    _print_verdict(result)


def _print_verdict(result: Any) -> None:
    count = len(result.positions)
    summary = (f"{count} positions over {len(result.prompts)} prompt(s), max |logprob diff| "
               f"{result.max_abs_diff:.2e} (tolerance {result.tolerance:.0e})")
    if result.passed:
        report.line(f"MATCH: {summary}; served model {result.served_model!r} at {result.server}")
        return
    report.line(f"MISMATCH: {summary}")
    failure = result.first_failure()
    if failure is None:
        return
    prompt, position = failure
    if position is None:
        reason = "its prompt was tokenized differently" if not prompt.prompt_ids_match else "no positions came back"
        report.line(f"  first failure: prompt {prompt.prompt!r}: {reason}")
    else:
        report.line(f"  first failure: prompt {prompt.prompt!r} position {position.index}: MAX chose "
                    f"{_token(position.token, position.token_id)} ({position.max_logprob:.6f}), HF gives it "
                    f"{position.hf_logprob:.6f} and prefers {_token(position.hf_top1, position.hf_top1_id)}")


def _token(text: str, token_id: int | None) -> str:
    return f"{text!r} ({token_id})" if token_id is not None else repr(text)


# -- serve --------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from import_model.verify.serve import MaxServer

    server = MaxServer(_serve_options(args))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` of this command must stop the server too
    _say(f"starting: {server.command_line}")
    _say(f"log: {server.log_path}")
    with server:
        _say(f"ready after {server.ready_after:.1f}s at {server.url}  (model name {_served_name(args)!r})")
        _say(f"compare it: import-model compare {args.model} --slug {_served_name(args)} --port {server.port}")
        _say("Ctrl-C stops the server.")
        try:
            code = server.wait()
        except KeyboardInterrupt:
            report.line("stopping max serve ...")
            return 0
    raise UserError(f"max serve exited with code {code} (log {server.log_path})", exit_code=1)


def _say(text: str) -> None:
    """One unwrapped line (commands must stay copy-pasteable)."""
    report.console().print(report.visible(text), soft_wrap=True, markup=False, emoji=False, highlight=False)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _serve_options(args: argparse.Namespace) -> Any:
    from import_model.source import user_path
    from import_model.verify.serve import ServeOptions

    port_dir = user_path(args.port_dir, "--port-dir").resolve()
    if not port_dir.is_dir():
        raise UserError(f"--port-dir {args.port_dir}: no such directory")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a TCP port")
    if args.timeout <= 0:
        raise UserError("--timeout must be positive")
    model = _model_argument(args.model)
    cpu = args.device == "cpu"
    return ServeOptions(
        model=model, port_dir=port_dir, device=args.device, encoding=args.encoding, host=args.host, port=args.port,
        max_length=args.max_length if args.max_length is not None else (CPU_MAX_LENGTH if cpu else None),
        max_batch_size=args.max_batch_size if args.max_batch_size is not None else (CPU_MAX_BATCH_SIZE if cpu else None),
        served_model_name=_served_name(args), log_path=user_path(args.log, "--log") if args.log else None,
        startup_timeout=args.timeout,
    )


def _model_argument(model: str) -> str:
    """A local checkpoint as an absolute path; a hub ID as given (checked for shape, not fetched)."""
    from import_model.source import open_source

    source = open_source(model)
    return str(Path(model).expanduser().resolve()) if source.kind == "local" else model


def _served_name(args: argparse.Namespace) -> str:
    return args.served_model_name or Path(args.port_dir).expanduser().resolve().name
