"""``import-model plan MODEL``: anatomy, donor ranking, delta list and the default plan."""

from __future__ import annotations

import argparse
from pathlib import Path

from import_model import report
from import_model.commands.recon import print_native
from import_model.errors import UserError
from import_model.plan.planner import Plan, make_plan, top
from import_model.source import load_checkpoint, load_config, open_source, user_path

#: Evidence is cut to this many characters in the terminal tables (JSON and Markdown keep it whole).
EVIDENCE_WIDTH = 110
#: Under the default plan in the tracking document: where the reviewer's yes or veto goes.
REVIEW_NOTE = ("**Review:** accept or veto the default plan above before any code is written; write the decision "
               "below this section, outside the markers, where it survives every rewrite. `import-model port` "
               "shows the same plan and waits for a yes on a terminal; `port --yes` records that it was accepted.")


def cmd_plan(args: argparse.Namespace) -> int:
    markdown = user_path(args.markdown, "--markdown") if args.markdown else None
    source = open_source(args.model, args.revision)
    config = load_config(source)
    checkpoint = load_checkpoint(source, progress=report.progress)
    plan = make_plan(source.display, config, checkpoint, donor=args.donor)
    if markdown is not None:
        card, note = source.read_card()
        if note:
            report.progress(note)
        _write_markdown(markdown, plan, config, card)
    if args.json:
        report.emit_json(plan.as_dict())
    else:
        _print(plan)
    return 0


def _write_markdown(path: Path, plan: Plan, config: dict, card: str | None) -> None:
    """The tracking document (PORT.md layout): guard, card, config and the plan in the delta section."""
    from import_model.plan.markdown import render_markdown
    from import_model.port import tracking
    from import_model.port.tracking import plan_sections

    if path.is_dir():
        raise UserError(f"--markdown {path}: is a directory; name a file")
    if not path.parent.is_dir():
        raise UserError(f"--markdown {path}: the folder {path.parent} does not exist")
    sections = plan_sections(plan, config, card) if not plan.is_native else {}
    sections["deltas"] = render_markdown(plan).split("\n", 1)[1].strip()
    if plan.default is not None:
        sections["deltas"] += "\n\n" + REVIEW_NOTE
    try:
        tracking.write_tracking(path, f"Port of {plan.model} to MAX", sections)
    except OSError as exc:
        raise UserError(f"--markdown {path}: cannot write ({exc.strerror or exc})") from exc


def _cut(text: str, width: int = EVIDENCE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _print(plan: Plan) -> None:
    report.heading(plan.model)
    report.line(f"architecture: {plan.architecture or '(none declared)'}    model_type: {plan.model_type or '-'}")
    if plan.is_native:
        print_native(plan.architecture, plan.native, plan.serve_command, plan.model)
        return
    anatomy = plan.anatomy
    if anatomy is not None:
        report.table(f"Anatomy ({anatomy.category}; modeling source: {anatomy.modeling_file or 'none found'})",
                     ["trait", "value", "source", "evidence"],
                     [(r.key, r.value, r.source, _cut(r.evidence)) for r in anatomy.rows.values()])
    report.table(f"Closest MAX donors (score = weighted differences, lower is closer; top {len(top(plan))})",
                 ["#", "donor", "HF class", "score", "deltas", "differences"],
                 [(n, c.donor.slug, c.donor.architecture, c.score, len(c.deltas),
                   _cut(", ".join(d.rule for d in c.deltas) or "none", 80)) for n, c in enumerate(top(plan), 1)])
    if plan.chosen is not None:
        how = "chosen with --donor" if plan.forced else "closest eligible donor"
        report.table(f"Delta list against {plan.chosen.donor.slug} ({how}; {plan.verdict})",
                     ["#", "component", "HF behaviour", "donor behaviour", "change needed", "where found"],
                     [(n, d.component, d.hf, d.donor, d.change, _cut(d.where) + (" [unverified]" if d.unverified else ""))
                      for n, d in enumerate(plan.deltas, 1)])
        if not plan.deltas:
            report.line(f"no difference found against {plan.chosen.donor.slug}: check the anatomy rows sourced 'default'")
    if plan.default is not None:
        report.heading("Default plan (state it, then let the user veto)")
        report.table(None, ["axis", "default"], [
            ("distribution shape", plan.default.distribution), ("quantization variants", plan.default.quantization),
            ("validation depth", plan.default.validation), ("hardware target", plan.default.hardware),
        ])
        report.line(plan.default.paragraph)
    for note in plan.notes:
        report.line(f"note: {note}")
    if plan.chosen is not None:
        report.line(f"next: import-model scaffold {plan.model} --start-from {plan.chosen.donor.slug} --output-dir DIR")


__all__ = ["cmd_plan"]
