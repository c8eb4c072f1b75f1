"""The plan as a Markdown section for the port's tracking document."""

from __future__ import annotations

from import_model.plan.planner import Plan, top


def _cell(value: object) -> str:
    text = "-" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(plan: Plan) -> str:
    lines = [f"# Plan: {plan.model}", "",
             f"- architecture: `{plan.architecture or '-'}`, model_type: `{plan.model_type or '-'}`"]
    if plan.is_native:
        unread = {k["key"]: k for native in plan.native for k in native.get("unread_keys", [])}
        lines += ["", f"MAX registers `{plan.architecture}` natively; unverified on this config until "
                      f"`import-model check-native {plan.model}` says so (exit 0: no port needed).", ""]
        lines += [f"> MAX's code never reads `{k['key']}` = `{k['value']}` ({k['note']})." for k in unread.values()]
        lines += ["", f"```bash\n{plan.serve_command}\n```", ""]
        lines += [f"> Known difference: {text}" for native in plan.native for text in native.get("caveats", [])]
        return "\n".join(lines)
    if plan.anatomy is not None:
        lines += [f"- category: {plan.anatomy.category}; modeling source: `{plan.anatomy.modeling_file or '-'}`", "",
                  "## Anatomy", ""]
        lines += _table(["trait", "value", "source", "evidence"],
                        [[r.key, r.value, r.source, r.evidence] for r in plan.anatomy.rows.values()])
    lines += ["", "## Donor ranking", ""]
    lines += _table(["donor", "HF class", "score", "deltas", "structural"],
                    [[c.donor.slug, c.donor.architecture, c.score, len(c.deltas),
                      sum(1 for d in c.deltas if d.weight >= 10)] for c in top(plan)])
    if plan.chosen is not None:
        how = "chosen with --donor" if plan.forced else "closest eligible donor"
        lines += ["", f"## Delta list against `{plan.chosen.donor.slug}` ({how}; {plan.verdict})", ""]
        lines += _table(["#", "component", "HF behaviour", "donor behaviour", "change needed", "where found", "done"],
                        [[n, d.component, d.hf, d.donor, d.change, d.where, "[ ]"] for n, d in enumerate(plan.deltas, 1)])
    if plan.default is not None:
        lines += ["", "## Default plan (veto before scaffolding)", "", plan.default.paragraph, ""]
    for note in plan.notes:
        lines.append(f"> note: {note}")
    return "\n".join(lines) + "\n"
