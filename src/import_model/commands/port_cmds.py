"""Phase 2 commands: ``scaffold`` (write the port's file layout) and ``audit`` (donor words left in it)."""

from __future__ import annotations

import argparse
from typing import Any

from import_model import report
from import_model.arg_types import nonblank
from import_model.errors import UserError

#: Rows of failing hits the audit table prints; ``--json`` lists every hit.
AUDIT_TABLE_ROWS = 200


def add_port_parsers(sub: Any, command: Any) -> None:
    """Register ``scaffold`` and ``audit`` on the CLI's subparsers."""
    p = command(sub, "scaffold", "write DIR/<slug>/: the five port files plus <slug>.py from a MAX donor (2: refused)")
    p.add_argument("model", metavar="MODEL", help="hub ID (org/name) or local checkpoint directory")
    p.add_argument("--revision", type=nonblank, default=None, help="hub branch, tag or commit (hub models only)")
    p.add_argument("--start-from", type=nonblank, required=True, metavar="SLUG", help="the MAX donor architecture (see `plan`)")
    p.add_argument("--output-dir", type=nonblank, required=True, metavar="DIR", help="the port goes to DIR/<slug>, PORT.md to DIR")
    p.add_argument("--full-copy", action="store_true",
                   help="copy and rename the donor's code instead of subclassing it")
    p.add_argument("--slug", type=nonblank, default=None, help="package name of the port (default: from model_type)")
    p.add_argument("--force", action="store_true", help="replace an existing port (PORT.md notes are kept)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command(sub, "audit", "donor names and claims left in a port's docstrings and comments (exit 0 clean, 1 not)")
    p.add_argument("port_dir", metavar="PORT_DIR", help="the port package: <output_dir>/<slug>")
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_scaffold(args: argparse.Namespace) -> int:
    from import_model.commands.port_run import claim_package, open_target
    from import_model.plan.planner import make_plan
    from import_model.port.scaffold import ScaffoldRequest, donor_entry, port_names, write_scaffold
    from import_model.recon import registry
    from import_model.source import load_checkpoint

    target = open_target(args.model, args.revision, args.output_dir)
    donor = donor_entry(args.start_from)
    source = target.source
    if target.natives:
        raise UserError(f"MAX registers {target.architecture} natively (slug {target.natives[0].slug}): no port "
                        f"needed; serve it with: {registry.serve_command(source.display)}")
    slug = claim_package(target, args.slug, args.force)
    checkpoint = load_checkpoint(source, progress=report.progress)
    plan = make_plan(source.display, target.config, checkpoint, donor=donor.slug)
    request = ScaffoldRequest(source, target.config, checkpoint, plan, donor, port_names(target.architecture, slug),
                              target.out_dir, full_copy=args.full_copy)
    result = write_scaffold(request, progress=report.progress)
    if args.json:
        report.emit_json(result.as_dict())
        return 0
    report.line(f"scaffolded {result.port_dir} ({result.mode} mode from {result.donor}), registered as "
                f"{result.architecture}; PORT.md: {result.tracking}")
    report.table(None, ["file", "open delta TODOs"],
                 [(name, ", ".join(result.todos.get(name, [])) or "-") for name in result.files])
    if result.borrowed:
        report.line(f"still imported from the donor: {', '.join(result.borrowed)}")
    report.line(f"weight table: {result.weight_table}")
    report.line("this is a scaffold, not a port: it computes what the donor computes until every TODO is done.")
    report.line(f"next: implement the deltas, then `import-model audit {result.port_dir}`")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from import_model.port.audit import LIE, STALE, attestation, audit_port
    from import_model.source import user_path

    port_dir = user_path(args.port_dir, "PORT_DIR")
    if not port_dir.is_dir():
        raise UserError(f"{args.port_dir}: no such directory (pass <output_dir>/<slug>)")
    result = audit_port(port_dir)
    if not result.files:  # an attestation over no files would be a claim nothing checked
        raise UserError(f"{args.port_dir}: no Python files to audit; pass the port package <output_dir>/<slug>")
    code = 1 if result.failures else 0
    if args.json:
        report.emit_json(result.as_dict() | {"exit_code": code})
        return code
    if result.failures:
        shown_hits = result.failures[:AUDIT_TABLE_ROWS]
        report.table(f"audit of {port_dir}: {len(result.failures)} of {len(result.hits)} hits to rewrite",
                     ["verdict", "where", "match", "reason", "text"],
                     [(h.verdict, f"{h.file}:{h.line}", h.match, h.reason, h.text) for h in shown_hits])
        if len(result.failures) > len(shown_hits):
            report.line(f"... and {len(result.failures) - len(shown_hits)} more (--json lists every hit)")
    counts = result.counts()
    report.line(f"{counts.get(LIE, 0)} lie(s), {counts.get(STALE, 0)} stale, {counts.get('OK', 0)} OK "
                "(imports, lineage, open deltas; --json lists every hit)")
    if code == 0:
        report.line(attestation(result))
    else:
        report.line("rewrite the Lie and Stale lines (the seed's three-sentence pattern), then audit again.")
    return code


__all__ = ["add_port_parsers", "cmd_audit", "cmd_scaffold"]
