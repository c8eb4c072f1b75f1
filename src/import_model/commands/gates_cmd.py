"""``import-model gates`` (preflight / smoke / verify gates) and ``import-model renames`` (weight name table)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from import_model import report
from import_model.arg_types import nonblank, output_file, port_directory
from import_model.cache import atomic_write
from import_model.errors import UserError
from import_model.safe_output import strict_json
from import_model.source import load_checkpoint, load_config, open_source, shown, user_path


def add_gates_parsers(sub: Any, command: Any) -> None:
    """Register ``gates`` and ``renames`` on the CLI's subparsers (``command`` is cli._command)."""
    p = command(sub, "gates", "PASS/WARN/FAIL gates before serving: preflight, the four local smoke checks, parity")
    _common(p)
    p.add_argument("--phase", choices=["preflight", "smoke", "verify", "all"], default="smoke",
                   help="how far to go: preflight (files only); smoke (default: preflight + import smoke, graph "
                        "dry-build, adapter<->graph key diff, weights format); verify or all (smoke + parity, "
                        "compiles for minutes)")
    p.add_argument("--json-out", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")

    p = command(sub, "renames", "derive the checkpoint -> graph weight-name table by matching names and shapes")
    _common(p)
    p.add_argument("--write", action="store_true",
                   help="write the table into the port's weight_adapters.py (between markers; the rest is kept)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="hub ID or local checkpoint directory")
    p.add_argument("--revision", type=nonblank, default=None, help="hub branch, tag or commit (hub models only)")
    p.add_argument("--port-dir", required=True, metavar="DIR", help="the port package: <output_dir>/<slug>")


# -- gates ---------------------------------------------------------------------------


def cmd_gates(args: argparse.Namespace) -> int:
    from import_model.verify import gates

    port_dir = port_directory(args.port_dir)
    json_out = output_file(args.json_out, "--json-out") if args.json_out is not None else None  # refused before any gate runs
    ctx = gates.open_context(args.model, port_dir, args.revision, progress=report.progress)
    results = gates.run_gates(ctx, args.phase)
    code = gates.exit_code(results)
    payload = {"model": ctx.model, "port_dir": str(port_dir), "phase": args.phase,
               "passed": code == 0, "exit_code": code, "gates": [g.as_dict() for g in results]}
    if args.json:
        report.emit_json(payload)
    else:
        _print_gates(port_dir, ctx.model, results, code)
    if json_out is not None:
        _write_json_out(json_out, args.json_out, payload)
        if not args.json:
            report.line(f"results written to {args.json_out}")
    return code


def _print_gates(port_dir: Path, model: str, results: list[Any], code: int) -> None:
    counts = {s: sum(g.status == s for g in results) for s in ("PASS", "WARN", "FAIL", "SKIP")}
    report.table(f"gates for {port_dir.name} against {model}: "
                 + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
                 ["phase", "gate", "status", "detail"],
                 [(g.phase, g.name, g.status, g.detail) for g in results])
    if code:
        report.line("FAIL: fix the rows marked FAIL before serving (exit 1).")


def _write_json_out(path: Path, text: str, payload: dict[str, Any]) -> None:
    """Write the results file; a failure the pre-check could not foresee (disk full) is one line, exit 2."""
    try:
        atomic_write(path, (strict_json(payload, default=str) + "\n").encode())
    except OSError as exc:
        raise UserError(f"--json-out {shown(text)}: could not write the results ({exc.strerror or exc}); "
                        "the gates ran, see above") from None


# -- renames -------------------------------------------------------------------------


def cmd_renames(args: argparse.Namespace) -> int:
    from import_model.port import renames
    from import_model.port.package import open_delta_markers

    port_dir = user_path(args.port_dir, "--port-dir").resolve()
    if not (port_dir / "__init__.py").is_file():
        raise UserError(f"--port-dir {args.port_dir}: not a port (no __init__.py); pass <output_dir>/<slug>")
    source = open_source(args.model, args.revision)
    config = load_config(source)
    checkpoint = load_checkpoint(source, progress=report.progress)
    table = renames.derive_table(source, config, checkpoint, port_dir, open_delta_markers(port_dir), report.progress)
    mapping, dry, folder, is_twin = table.mapping, table.dry, table.built_on, table.on_twin
    for rule, keys in table.pending.items():
        mapping.notes.append(f"{len(keys)} checkpoint key(s) set aside until the open TODO(delta {rule}) is written")
    if dry.standins:
        mapping.notes.append("built with config stand-ins " + ", ".join(f"{a} <- {s}" for a, s in dry.standins.items())
                             + ": the port's config code reads keys this checkpoint lacks")
    if is_twin:
        mapping.notes += _twin_notes(checkpoint.tensors, table.tensors)
    written = renames.write_adapter_table(port_dir, mapping) if args.write else None
    payload = {"model": source.display, "port_dir": str(port_dir), "built_on": str(folder), "on_twin": is_twin,
               "dry_build_seconds": dry.seconds, "module": dry.module, "written": str(written) if written else None,
               **mapping.as_dict()}
    if args.json:
        report.emit_json(payload)
    else:
        _print_mapping(mapping, renames.adapter_table(mapping), payload)
    return 0 if mapping.complete else 1


def _twin_notes(real: dict[str, Any], twin: dict[str, Any]) -> list[str]:
    from import_model.port.renames import name_pattern

    unseen = sorted({name_pattern(k) for k in real} - {name_pattern(k) for k in twin})
    notes = ["derived on the tiny twin (the checkpoint is remote or large); names carry over, shapes are the twin's"]
    if unseen:
        notes.append(f"{len(unseen)} key pattern(s) of the real checkpoint are not in the twin and were not checked: "
                     + ", ".join(unseen[:5]))
    return notes


def _print_mapping(mapping: Any, table: Any, payload: dict[str, Any]) -> None:
    report.heading(f"weight table for {Path(payload['port_dir']).name} ({payload['module']} graph, dry build "
                   f"{payload['dry_build_seconds']:.1f} s{', on the twin' if payload['on_twin'] else ''})")
    rows: list[tuple[str, str, str]] = [(k, "->", v) for k, v in table.renames.items()]
    rows += [(k, f"split {layout} {ratio}", ", ".join(targets)) for k, (layout, targets, ratio) in table.splits.items()]
    rows += [(", ".join(sources), f"stack {layout}", k) for k, (layout, sources) in table.concats.items()]
    rows += [(v, "tied", k) for k, v in table.ties.items()]
    rows += [(k, "dropped", why) for k, why in table.drops.items()]
    identical = sum(1 for k, v in mapping.renames.items() if k == v)
    report.table(f"checkpoint -> graph ({identical} tensor(s) already carry the graph's name)",
                 ["checkpoint", "how", "graph"], rows)
    from import_model.port.renames import shape_text, summarize

    if mapping.orphans:
        report.table("orphans: checkpoint tensors nothing consumes", ["pattern", "count"], summarize(mapping.orphans))
    if mapping.missing:
        report.table("missing: graph weights nothing fills", ["pattern", "count"], summarize(mapping.missing))
    if mapping.mismatches:
        report.table("shape mismatches", ["checkpoint", "shape", "graph", "shape"], [
            (m.checkpoint, shape_text(m.checkpoint_shape), m.graph, shape_text(m.graph_shape))
            for m in mapping.mismatches])
    for note in mapping.notes:
        report.line(f"note: {note}")
    verdict = "complete" if mapping.complete else "INCOMPLETE: the graph and the checkpoint disagree (exit 1)"
    report.line(f"mapping {verdict}.")
    if payload["written"]:
        report.line(f"table written to {payload['written']} (between the import-model markers).")
