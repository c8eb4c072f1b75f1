"""Verify reports: Markdown for people, JSON for programs, and an SVG plot of error by layer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from import_model.cache import atomic_write
from import_model.safe_output import strict_json
from import_model.verify.parity import TapDiff
from import_model.verify.routing import NEAR_TIE


def worst_by_tap(diffs: list[TapDiff], tap_order: list[str]) -> list[dict[str, Any]]:
    """Per tap, the worst error over all prompts and steps (prefill and decode kept apart)."""
    rows = []
    for tap in tap_order:
        for phase, steps in (("prefill", lambda s: s == 0), ("decode", lambda s: s > 0)):
            chosen = [d for d in diffs if d.tap == tap and steps(d.step)]
            if not chosen:
                continue
            rows.append({
                "tap": tap, "phase": phase,
                "max_abs": max(d.max_abs for d in chosen),
                "rel_l2": max(d.rel_l2 for d in chosen),
                "cosine": min(d.cosine for d in chosen),
                "top1": min((d.top1_agree for d in chosen if d.top1_agree is not None), default=None),
                "kl": max((d.kl for d in chosen if d.kl is not None), default=None),
                "ok": all(d.ok for d in chosen),
            })
    return rows


def write_reports(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json (strict JSON: NaN is null), report.md and error_by_layer.svg into ``out_dir`` (atomically, each)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "plot": out_dir / "error_by_layer.svg"}
    atomic_write(paths["json"], strict_json(result, default=str).encode())
    atomic_write(paths["plot"], error_plot_svg(result.get("per_tap", [])).encode())
    atomic_write(paths["markdown"], markdown(result).encode())
    return paths


def markdown(result: dict[str, Any]) -> str:
    status = "PASS" if result.get("passed") else "FAIL"
    lines = [f"# Verify report: {result.get('architecture', '?')} — {status}", ""]
    lines += [f"- checkpoint: `{result.get('checkpoint')}`", f"- port: `{result.get('port_dir')}`"]
    timings = result.get("timings") or {}
    if timings:
        lines.append("- time: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items()))
    first = result.get("first_divergence")
    if result.get("error"):
        lines += ["", f"**{result['error']['step']} failed.** MAX's message:", "", "```text",
                  result["error"]["details"].strip()[-6000:], "```"]
        return "\n".join(lines) + "\n"
    if first:
        lines += ["", f"**First divergence:** `{first['tap']}` at "
                  f"{'prefill' if first['step'] == 0 else 'decode step ' + str(first['step'])} of prompt "
                  f"{first['prompt'] + 1} (rel. L2 {first['rel_l2']:.2e}, max |diff| {first['max_abs']:.2e}"
                  + (f"; {first['note']}" if first.get("note") else "") + ")."]
    else:
        lines += ["", "Every tap is within tolerance at prefill and at every decode step."]
    lines += ["", "## Error by tap", "", "![error by layer](error_by_layer.svg)", "",
              "| tap | phase | max abs diff | rel. L2 | min cosine | top-1 agree | KL | ok |", "|---|---|---|---|---|---|---|---|"]
    for row in result.get("per_tap", []):
        top1 = "-" if row["top1"] is None else f"{row['top1']:.3f}"
        kl = "-" if row["kl"] is None else f"{row['kl']:.2e}"
        lines.append(f"| {row['tap']} | {row['phase']} | {row['max_abs']:.2e} | {row['rel_l2']:.2e} | "
                     f"{row['cosine']:.6f} | {top1} | {kl} | {'yes' if row['ok'] else '**no**'} |")
    routing = result.get("routing") or []
    if routing:
        lines += ["", "## Routing", "",
                  f"Per MoE layer, over every prompt, prefill and decode: tokens whose chosen experts are HF's. A "
                  f"near-tie is a token whose k-th and (k+1)-th router scores lie within {NEAR_TIE:g} of each other, "
                  "so either choice is right to float32 rounding.", "",
                  "| layer | tokens | same experts | agreement | near-ties | divergent |", "|---|---|---|---|---|---|"]
        for row in routing:
            lines.append(f"| layer_{row['layer']} | {row['tokens']} | {row['same_experts']} | "
                         f"{100 * row['agreement']:.1f}% | {row['near_ties']} | "
                         f"{row['divergent'] if not row['divergent'] else '**' + str(row['divergent']) + '**'} |")
    prompts = result.get("prompts") or []
    if prompts:
        lines += ["", "## Greedy tokens", "", "| prompt | tokens | HF | MAX | match |", "|---|---|---|---|---|"]
        for p in prompts:
            lines.append(f"| `{_cell(p['prompt'])[:40]}` | {p['tokens']} | {p['hf_greedy']} | {p['max_greedy']} | "
                         f"{'yes' if p['hf_greedy'] == p['max_greedy'] else '**no**'} |")
    texts = result.get("greedy_text") or []
    if texts:
        lines += ["", "## Greedy text on the model's prompt format", "", "| prompt | HF | MAX | match |", "|---|---|---|---|"]
        for row in texts:
            lines.append(f"| {row['prompt']} | {_cell(row['hf_text'])} | {_cell(row['max_text'])} | "
                         f"{'yes' if row['match'] else '**no**'} |")
    for note in result.get("notes", []):
        lines += ["", f"> {note}"]
    return "\n".join(lines) + "\n"


def error_plot_svg(per_tap: list[dict[str, Any]], width: int = 640, height: int = 260) -> str:
    """Relative L2 error per tap (log scale), prefill and decode, as a small self-contained SVG."""
    taps = list(dict.fromkeys(row["tap"] for row in per_tap))
    if not taps:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40"><text x="8" y="24">no data</text></svg>'
    left, right, top, bottom = 60, 20, 20, 70
    floor, ceil = -10, 1
    def y(value: float) -> float:
        exponent = min(max(math.log10(value) if value > 0 else floor, floor), ceil)
        return top + (ceil - exponent) / (ceil - floor) * (height - top - bottom)
    def x(index: int) -> float:
        return left + (index + 0.5) * (width - left - right) / len(taps)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="10">']
    for exponent in range(floor, ceil + 1, 2):
        yy = y(10.0**exponent)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{yy + 3:.1f}" text-anchor="end">1e{exponent}</text>')
    for phase, colour in (("prefill", "#1f77b4"), ("decode", "#ff7f0e")):
        points = [(x(taps.index(r["tap"])), y(r["rel_l2"])) for r in per_tap if r["phase"] == phase]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>' for px, py in points]
    for index, tap in enumerate(taps):
        parts.append(f'<text transform="translate({x(index):.1f},{height - bottom + 12}) rotate(45)">{tap}</text>')
    parts.append(f'<text x="{left}" y="12">relative L2 error per tap (blue: prefill, orange: decode)</text></svg>')
    return "".join(parts)


def _cell(text: str) -> str:
    return text.replace("\n", "\\n").replace("|", "\\|")
