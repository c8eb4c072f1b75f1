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
    from import_model.commands.port_run import claim_package, open_target, write_weight_table
    from import_model.plan.planner import make_plan
    from import_model.port import tracking
    from import_model.port.donor_code import donor_entry
    from import_model.port.package import port_names
    from import_model.port.writer import PortRequest, Scaffold, write_port
    from import_model.recon import registry
    from import_model.source import load_checkpoint

    target = open_target(args.model, args.revision, args.output_dir)
    donor = donor_entry(args.start_from)
    source = target.source
    if target.natives:
        raise UserError(f"MAX registers {target.architecture} natively (slug {target.natives[0].slug}): no port "
                        f"needed if `import-model check-native {source.display}` verifies it (serve it with: "
                        f"{registry.serve_command(source.display)}); if it diverges, `import-model port` ports it "
                        "under the same class")
    slug = claim_package(target, args.slug, args.force)
    checkpoint = load_checkpoint(source, progress=report.progress)
    plan = make_plan(source.display, target.config, checkpoint, donor=donor.slug)
    request = PortRequest(port_names(target.architecture, slug), target.config,
                          example_repo_ids=(source.display,) if source.kind == "hub" else (),
                          scaffold=Scaffold(donor, tuple(plan.deltas), full_copy=args.full_copy))
    written = write_port(target.out_dir, request)
    tracking_path = target.out_dir / "PORT.md"
    sections = tracking.plan_sections(plan, target.config, source.read_card()[0])
    sections["scaffold"] = scaffold_section(written, request.names.architecture)
    tracking.write_tracking(tracking_path, f"Port of {source.display} to MAX", sections)
    _, table = write_weight_table(source, target.config, checkpoint, written.port_dir,
                                  [d.rule for d in plan.deltas])
    if args.json:
        report.emit_json(_scaffold_json(written, request.names.architecture, tracking_path, table))
        return 0
    report.line(f"scaffolded {written.port_dir} ({written.mode} mode from {written.donor}), registered as "
                f"{request.names.architecture}; PORT.md: {tracking_path}")
    report.table(None, ["file", "open delta TODOs"],
                 [(name, ", ".join(written.todos.get(name, [])) or "-") for name in written.files])
    if written.borrowed:
        report.line(f"still imported from the donor: {', '.join(written.borrowed)}")
    report.line(f"weight table: {table}")
    report.line("this is a scaffold, not a port: it computes what the donor computes until every TODO is done.")
    report.line(f"next: implement the deltas, then `import-model audit {written.port_dir}`")
    return 0


def _scaffold_json(written: Any, architecture: str, tracking_path: Any, table: str) -> dict[str, object]:
    return {"port_dir": str(written.port_dir), "tracking": str(tracking_path), "mode": written.mode,
            "donor": written.donor, "architecture": architecture, "slug": written.port_dir.name,
            "files": list(written.files), "todos": written.todos, "rehomed": list(written.rehomed),
            "borrowed_from_donor": list(written.borrowed), "generated_in_full_copy": list(written.generated),
            "weight_table": table}


#: What each file of a port holds, for PORT.md's scaffold section.
FILE_ROLES: dict[str, str] = {
    "__init__.py": "package entry: `ARCHITECTURES` for `--custom-architectures`",
    "arch.py": "registration: HF class name, encodings, adapters, pipeline model, config",
    "model_config.py": "config class: reads config.json into graph settings",
    "model.py": "pipeline model: loads weights, builds config and graph, executes",
    "weight_adapters.py": "weight adapter: checkpoint names onto graph names",
}


def scaffold_section(written: Any, architecture: str) -> str:
    """PORT.md's record of a scaffold: its files, their open TODOs, what was taken from the donor."""
    from import_model.port.tracking import md_table

    how = "subclasses the donor's classes" if written.mode == "subclass" else "the donor's files copied and renamed"
    lines = [f"`{written.port_dir.name}/` scaffolded from `{written.donor}` ({written.mode} mode: {how}); "
             f"registered as `{architecture}`.", "",
             md_table(["file", "role", "open delta TODOs"],
                      [(f"`{name}`", FILE_ROLES.get(name, "the decoder graph"),
                        ", ".join(written.todos.get(name, [])) or "-") for name in written.files]), ""]
    if written.rehomed:
        lines.append("Donor methods copied into the pipeline model so the port's classes are built: "
                     + ", ".join(f"`{m}`" for m in written.rehomed) + ".")
    if written.borrowed:
        lines.append("Still imported from the donor in MAX (not copied): "
                     + ", ".join(f"`{b}`" for b in written.borrowed) + ".")
    lines += ["", "A scaffold is not a port: implement every delta, then run "
              f"`import-model audit {written.port_dir}` before the local gates."]
    return "\n".join(lines)


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
