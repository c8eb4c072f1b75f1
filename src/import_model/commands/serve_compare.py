"""``import-model serve`` (run a port under ``max serve``) and ``import-model compare`` (served logprobs vs HF)."""

from __future__ import annotations

import argparse
import math
import signal
from pathlib import Path
from typing import Any

from import_model import report
from import_model.arg_types import (
    count,
    float_in,
    host_name,
    int_in,
    nonblank,
    output_file,
    port_directory,
    tcp_port,
    timeout_s,
)
from import_model.errors import UserError

#: CPU serving defaults: a short context and one sequence keep the KV cache small on the host.
CPU_MAX_LENGTH = 512
CPU_MAX_BATCH_SIZE = 1
#: Most greedy tokens ``compare`` asks the server for per prompt.
MAX_COMPARE_TOKENS = 512


def add_parsers(sub: Any, command: Any) -> None:
    p = command(sub, "compare", "per-position logprobs of a running `max serve` vs the HF reference (exit 0/1/2)")
    p.add_argument("model", metavar="MODEL", help="the HF checkpoint the server runs: local directory or hub ID")
    p.add_argument("--revision", type=nonblank, default=None, help="hub branch, tag or commit (hub models only)")
    p.add_argument("--slug", type=nonblank, default=None, metavar="NAME",
                   help="model name the server was started with (default: the one it lists under /v1/models)")
    p.add_argument("--port", type=tcp_port, required=True, metavar="N", help="port of the running max serve")
    p.add_argument("--host", type=host_name, default="127.0.0.1", help="host of the running max serve (default 127.0.0.1)")
    p.add_argument("--prompt", action="append", type=nonblank, metavar="TEXT",
                   help="prompt to complete (repeatable; default: two)")
    p.add_argument("--tokens", type=int_in(1, MAX_COMPARE_TOKENS), default=8, metavar="K",
                   help=f"greedy tokens per prompt (default 8, at most {MAX_COMPARE_TOKENS})")
    p.add_argument("--tolerance", "--tol", type=float_in(0.0, math.inf), default=1e-3, metavar="T",
                   help="largest |logprob diff| that still matches (default 1e-3, for float32)")
    p.add_argument("--timeout", type=timeout_s, default=300.0, metavar="S", help="seconds per request (default 300)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command(sub, "serve", "start `max serve` with a port's custom architecture and keep it in the foreground")
    p.add_argument("model", metavar="MODEL", help="checkpoint to serve: local directory or hub ID")
    p.add_argument("--port-dir", required=True, metavar="DIR", help="the port package: <output_dir>/<slug>")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="cpu (default) or gpu")
    p.add_argument("--encoding", type=nonblank, default=None, metavar="ENC",
                   help="--quantization-encoding (default: float32 on cpu, bfloat16 on gpu)")
    p.add_argument("--port", type=tcp_port, default=None, metavar="N", help="HTTP port (default: a free one)")
    p.add_argument("--host", type=host_name, default="127.0.0.1",
                   help="IPv4 interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--max-length", type=count, default=None, metavar="L",
                   help=f"longest sequence (default on cpu: {CPU_MAX_LENGTH}; on gpu: MAX's default)")
    p.add_argument("--max-batch-size", type=count, default=None, metavar="B",
                   help=f"largest batch (default on cpu: {CPU_MAX_BATCH_SIZE}; on gpu: MAX's default)")
    p.add_argument("--served-model-name", type=nonblank, default=None, metavar="NAME",
                   help="name clients request (default: the port's slug, the directory name)")
    p.add_argument("--log", default=None, metavar="FILE", help="server log (default: under the import-model cache)")
    p.add_argument("--timeout", type=timeout_s, default=900.0, metavar="S",
                   help="seconds to wait for the server to be ready (default 900; a cold CPU compile takes minutes)")


# -- compare ------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from import_model.verify.compare import DEFAULT_PROMPTS, ServerClient, run_compare

    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address in a URL
    client = ServerClient(host, args.port, timeout=args.timeout)
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
    from import_model.source import shown
    from import_model.verify.serve import ServeOptions

    port_dir = port_directory(args.port_dir)
    if not (port_dir / "__init__.py").is_file():
        raise UserError(f"--port-dir {shown(args.port_dir)}: not a port (no __init__.py); pass <output_dir>/<slug>")
    _check_listen(args.host)
    log_path = output_file(args.log, "--log", example="serve.log", devices_ok=True) if args.log is not None else None
    model = _model_argument(args.model)
    cpu = args.device == "cpu"
    return ServeOptions(
        model=model, port_dir=port_dir, device=args.device, encoding=args.encoding, host=args.host, port=args.port,
        max_length=args.max_length if args.max_length is not None else (CPU_MAX_LENGTH if cpu else None),
        max_batch_size=args.max_batch_size if args.max_batch_size is not None else (CPU_MAX_BATCH_SIZE if cpu else None),
        served_model_name=_served_name(args), log_path=log_path,
        startup_timeout=args.timeout,
    )


def _check_listen(host: str) -> None:
    """``--host`` must be an IPv4 address of this machine (or a name for one): the server binds it."""
    import socket

    from import_model.source import shown

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UserError(f"--host {shown(host)}: cannot listen there ({reason}); use 127.0.0.1, 0.0.0.0 or an "
                        "IPv4 address of this machine") from None


def _model_argument(model: str) -> str:
    """A local checkpoint as an absolute path; a hub ID as given (checked for shape, not fetched)."""
    from import_model.source import open_source

    source = open_source(model)
    return str(Path(model).expanduser().resolve()) if source.kind == "local" else model


def _served_name(args: argparse.Namespace) -> str:
    return args.served_model_name or Path(args.port_dir).expanduser().resolve().name
