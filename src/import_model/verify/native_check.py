"""Is MAX's own registration of a class right for this exact config? Parity of the native graph, not a name match.

``check-native`` answers one of three verdicts, cheapest evidence first:

1. The config keys the native code never reads (``recon.native_reads``, static) are collected as explanations.
2. MAX's registration is copied verbatim as a custom architecture under the checkpoint's own class (MAX lets a
   custom architecture override a native one; float32 is added where MAX registers bfloat16 only; a mixture of
   experts gets a CPU path for its GPU-only kernels, MAX's gate and expert MLPs kept, ``every_expert_moe.py``;
   the notes say which) and dry-built without compiling: a checkpoint weight the graph never loads (a Llama's
   ``mlp.*.bias``) means MAX computes something else, so the verdict is ``diverges`` with no compile.
3. Otherwise the graph is compiled and compared with transformers tap by tap by the verify engine, float32 on the
   CPU: ``verified`` (worst rel. L2), ``diverges`` (first divergent tap), or ``cannot_run`` (MAX's own message).

``recon.native_caveats`` only explains a divergence the comparison found; it never decides a verdict.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from import_model.errors import UserError
from import_model.recon.native_caveats import native_caveats
from import_model.recon.native_reads import UnreadKey, unread_keys
from import_model.recon.registry import NativeArch

Verdict = Literal["verified", "diverges", "cannot_run"]
VERIFIED: Verdict = "verified"
DIVERGES: Verdict = "diverges"
CANNOT_RUN: Verdict = "cannot_run"
EXIT_CODES: dict[Verdict, int] = {VERIFIED: 0, DIVERGES: 1, CANNOT_RUN: 2}
#: How many unread weight names a report lists (the count is always given).
SHOWN_WEIGHTS = 12


@dataclass(frozen=True)
class NativeCheck:
    """One check-native answer, as data."""

    model: str
    architecture: str
    slug: str
    weights: str
    verdict: Verdict
    #: One sentence: why this verdict.
    reason: str
    worst_rel_l2: float | None = None
    first_divergence: dict[str, Any] | None = None
    unread_keys: tuple[UnreadKey, ...] = ()
    unread_weights: tuple[str, ...] = ()
    #: Known differences between MAX's code and transformers that apply to this config (explanation text only).
    explanations: tuple[str, ...] = ()
    #: MAX's own message when the check could not run.
    details: str = ""
    per_tap: tuple[dict[str, Any], ...] = ()
    #: Real weights: greedy continuations of HF and MAX on the model's chat format, token for token.
    greedy_text: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    #: Mixture of experts: per MoE layer, the token-layers whose experts match HF's (``verify.routing``'s summary).
    routing: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "architecture": self.architecture, "slug": self.slug, "weights": self.weights,
            "verdict": self.verdict, "exit_code": self.exit_code, "reason": self.reason,
            "worst_rel_l2": self.worst_rel_l2, "first_divergence": self.first_divergence,
            "unread_keys": [k.as_dict() for k in self.unread_keys], "unread_weights": list(self.unread_weights),
            "explanations": list(self.explanations), "details": self.details, "per_tap": list(self.per_tap),
            "greedy_text": list(self.greedy_text), "notes": list(self.notes), "routing": self.routing,
            "timings": self.timings,
        }


def from_dict(data: dict[str, Any]) -> NativeCheck:
    """The inverse of :meth:`NativeCheck.as_dict` (what a parent process reads back from a child's JSON)."""
    verdict = data.get("verdict")
    if verdict not in EXIT_CODES:
        raise ValueError(f"not a check-native verdict: {verdict!r}")
    return NativeCheck(
        model=str(data["model"]), architecture=str(data["architecture"]), slug=str(data["slug"]),
        weights=str(data["weights"]), verdict=verdict, reason=str(data["reason"]),
        worst_rel_l2=data.get("worst_rel_l2"), first_divergence=data.get("first_divergence"),
        unread_keys=tuple(UnreadKey(k["key"], k["value"], k["note"]) for k in data.get("unread_keys", [])),
        unread_weights=tuple(data.get("unread_weights", [])), explanations=tuple(data.get("explanations", [])),
        details=str(data.get("details", "")), per_tap=tuple(data.get("per_tap", [])),
        greedy_text=tuple(data.get("greedy_text", [])),
        notes=tuple(data.get("notes", [])), routing=str(data.get("routing") or ""),
        timings=dict(data.get("timings", {})),
    )


def check_native(checkpoint: Path, config: dict[str, Any], arch: NativeArch, options: Any, *, model: str,
                 weights: str = "twin", progress: Callable[[str], None] = lambda _m: None) -> NativeCheck:
    """Run the three steps on ``checkpoint`` (a twin or the real weights) against MAX's registration ``arch``."""
    keys = tuple(unread_keys(arch.slug, config))
    base = {"model": model, "architecture": arch.name, "slug": arch.slug, "weights": weights, "unread_keys": keys}
    known = tuple(native_caveats(arch.name, config))  # quoted only to explain a divergence found below
    work = Path(tempfile.mkdtemp(prefix="import-model-native-"))
    try:
        try:
            port, copy_notes = native_registration_copy(arch, work)
        except UserError as exc:
            return NativeCheck(**base, verdict=CANNOT_RUN, reason=f"MAX's registration could not be copied: {exc}")
        progress(f"reading which weights MAX's {arch.slug} graph loads (a dry build, no compile)")
        dry = _dry_build(checkpoint, port)
        if isinstance(dry, str):
            return NativeCheck(**base, verdict=CANNOT_RUN, details=dry,
                               reason=f"MAX could not build its own module tree for this config: {dry.splitlines()[0][:240]}")
        unread = tuple(sorted(set(dry.adapted) - set(dry.expected)))
        if unread:
            return NativeCheck(**base, verdict=DIVERGES, unread_weights=unread, timings={"dry_build_s": dry.seconds},
                               explanations=known,
                               reason=f"the checkpoint holds {len(unread)} weight(s) MAX's {arch.slug} graph never "
                                      f"loads ({_patterns(unread)}): MAX computes without them")
        return _compare(checkpoint, port, options, base, progress, dry.seconds, known, copy_notes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def native_registration_copy(arch: NativeArch, work: Path) -> tuple[Path, tuple[str, ...]]:
    """MAX's registration of ``arch`` copied as a custom architecture of the same class, runnable in float32 on
    the CPU; and what the copy changed beyond its class name, as notes for the report."""
    from import_model.port.native_copy import allow_cpu_float32, copy_native_port, run_experts_on_cpu

    port = copy_native_port(arch.slug, work, class_name=arch.name, port_slug=f"native_{arch.slug.lower()}",
                            registration=arch.name)
    notes = []
    if allow_cpu_float32(port):
        notes.append("float32 added to the registration's encodings (MAX lists bfloat16 only)")
    moe_files = run_experts_on_cpu(port)
    if moe_files:
        notes.append(f"experts: CPU path ({', '.join(moe_files)}: MAX's MoE with its own gate and expert MLPs, "
                     "every expert run on every token and weighed by the gate's top-k; MAX's grouped-matmul "
                     "kernels have no CPU implementation; the router's weights in the checkpoint's dtype, where MAX "
                     "builds every gate in bfloat16)")
    return port, tuple(notes)


def _dry_build(checkpoint: Path, port: Path) -> Any:
    """The dry build's weights, or MAX's message (a string) when the module tree does not build."""
    from import_model.port.renames import DryBuildError, dry_build

    try:
        return dry_build(checkpoint, port)
    except DryBuildError as exc:
        return f"{exc.message}\n{exc.details}".strip()


def _compare(checkpoint: Path, port: Path, options: Any, base: dict[str, Any],
             progress: Callable[[str], None], dry_seconds: float, known: tuple[str, ...],
             copy_notes: tuple[str, ...] = ()) -> NativeCheck:
    from import_model.verify.engine import run_verify
    from import_model.verify.max_runner import MaxBuildError, headline
    from import_model.verify.report_files import worst_by_tap

    start = time.perf_counter()
    try:
        result = run_verify(checkpoint, port, options, progress=progress)
    except MaxBuildError as exc:
        return NativeCheck(**base, verdict=CANNOT_RUN, details=exc.details,
                           reason=f"MAX could not build or run its own graph on the CPU: {headline(exc.details)[:300]}")
    per_tap = tuple(worst_by_tap(result.verdict.diffs, result.tap_order))
    worst = max((row["rel_l2"] for row in per_tap), default=None)
    timings = {"dry_build_s": dry_seconds, **result.timings, "total_s": round(time.perf_counter() - start, 2)}
    from import_model.verify.routing import summary

    routing = summary(result.routing) if result.routing else ""
    common = {**base, "worst_rel_l2": worst, "per_tap": per_tap, "notes": copy_notes + tuple(result.notes),
              "timings": timings, "greedy_text": tuple(result.greedy_text), "routing": routing}
    if result.verdict.passed:
        untested = f"; the config keys MAX's code never reads ({', '.join(k.key for k in base['unread_keys'])}) " \
            "made no difference on these prompts" if base["unread_keys"] else ""
        return NativeCheck(**common, verdict=VERIFIED,
                           reason=f"MAX's own graph matches transformers on every tap (worst rel. L2 {worst:.1e})"
                                  f"{untested}")
    first = result.verdict.as_dict()["first_divergence"]
    where = first["tap"] if first else "the greedy tokens"
    phase = "" if not first else " at prefill" if first["step"] == 0 else f" at decode step {first['step']}"
    because = f"; config keys MAX's code never reads: {', '.join(k.key for k in base['unread_keys'])}" \
        if base["unread_keys"] else ""
    return NativeCheck(**common, verdict=DIVERGES, first_divergence=first, explanations=known,
                       reason=f"MAX's own graph diverges from transformers at {where}{phase}{because}")


def _patterns(names: tuple[str, ...]) -> str:
    """``layers.*.mlp.down_proj.bias, ...``: the names with layer numbers folded, a few shown."""
    folded = sorted({re.sub(r"\.\d+\.", ".*.", name) for name in names})
    more = f" and {len(folded) - 3} more pattern(s)" if len(folded) > 3 else ""
    return ", ".join(folded[:3]) + more
