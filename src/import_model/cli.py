"""``import-model <command>``: one CLI for every phase.

Each command lives in :mod:`import_model.commands`; this module only builds
the argument parser and turns failures into one line and an exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from import_model import __version__
from import_model.arg_types import nonblank
from import_model.errors import UserError
from import_model.safe_output import VisibleArgumentParser

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = VisibleArgumentParser(
        prog="import-model",
        description="Take a Hugging Face language model to a verified Modular MAX architecture.",
    )
    parser.add_argument("--version", action="version", version=f"import-model {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _command(sub, "inspect", "config keys mapped to MAX, native check, size, memory, model-card notes")
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    p = _command(sub, "list-archs", "every architecture the installed MAX registers, marked by task (HF class -> MAX slug)")
    p.add_argument("--match", type=nonblank, metavar="CLASS", help="exit 0 and print the rows if MAX registers CLASS, else exit 1")
    p.add_argument("--donors", action="store_true", help="only text-generation models a port can start from")
    p.add_argument("--all-tasks", action="store_true",
                   help="every task (text, embeddings, pixel, audio), which is the default; kept for old command lines")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _command(sub, "list-keys", "checkpoint tensor names, shapes and dtypes, read from headers only")
    _model_args(p)
    p.add_argument("--summary", action="store_true", help="collapse per-layer keys into one pattern row each")
    p.add_argument("--prefix", action="append", metavar="P", help="only keys starting with P (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _command(sub, "check-walls", "hard blockers and warnings before a port (exit 0 clear, 1 warn, 2 block)")
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _command(sub, "plan", "anatomy, closest MAX donors, delta list and the default plan for a port")
    _model_args(p)
    p.add_argument("--donor", metavar="SLUG", help="compare against this MAX donor instead of the closest one")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--markdown", type=nonblank, metavar="FILE", help="also write the plan as a Markdown tracking section to FILE")

    p = _command(sub, "twin", "write a tiny seeded random-weight twin of MODEL (same architecture, small widths)")
    _model_args(p)
    p.add_argument("--output", required=True, metavar="DIR", help="directory to create (must not exist or be empty)")
    p.add_argument("--layers", type=int, default=None, metavar="N", help="decoder layers (default: enough for the layer pattern)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing twin directory")
    p.add_argument("--json", action="store_true", help="print JSON")

    # Later phases keep their argument definitions beside their commands.
    from import_model.commands import gates_cmd, native, port_cmds, port_run, serve_compare, verify

    native.add_check_native_parser(sub, _command)
    port_cmds.add_port_parsers(sub, _command)
    port_run.add_port_run_parser(sub, _command)
    gates_cmd.add_gates_parsers(sub, _command)
    verify.add_verify_parser(sub, _command)
    serve_compare.add_parsers(sub, _command)
    return parser


def _command(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler_name=name)
    return parser


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="hub ID (org/name) or local checkpoint directory")
    parser.add_argument("--revision", type=nonblank, default=None, help="hub branch, tag or commit (hub models only)")


def _handlers() -> dict[str, Handler]:
    from import_model.commands import gates_cmd, native, plan, port_cmds, port_run, recon, serve_compare, verify

    return {
        "inspect": recon.cmd_inspect,
        "list-archs": recon.cmd_list_archs,
        "list-keys": recon.cmd_list_keys,
        "check-walls": recon.cmd_check_walls,
        "check-native": native.cmd_check_native,
        "plan": plan.cmd_plan,
        "twin": recon.cmd_twin,
        "scaffold": port_cmds.cmd_scaffold,
        "audit": port_cmds.cmd_audit,
        "renames": gates_cmd.cmd_renames,
        "gates": gates_cmd.cmd_gates,
        "verify": verify.cmd_verify,
        "serve": serve_compare.cmd_serve,
        "compare": serve_compare.cmd_compare,
        "port": port_run.cmd_port,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from import_model import report

    try:
        return _handlers()[args.handler_name](args)
    except UserError as exc:
        report.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        report.error("interrupted; nothing was left half-written")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a raw traceback
        if os.environ.get("IMPORT_MODEL_DEBUG"):
            raise
        report.error(f"internal error in {args.handler_name}: {type(exc).__name__}: {str(exc)[:200]} "
                     "(set IMPORT_MODEL_DEBUG=1 for the traceback and report it)")
        return 3


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
