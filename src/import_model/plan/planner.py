"""``make_plan``: anatomy, donor ranking, delta list and default plan for one model, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from import_model.errors import UserError
from import_model.plan.anatomy import Anatomy, build_anatomy
from import_model.plan.defaults import DefaultPlan, default_plan
from import_model.plan.donors import STYLE, TOP, Candidate, DonorInfo, compare, load_donors, rank, score
from import_model.recon import registry
from import_model.recon.native_caveats import native_entries
from import_model.source.checkpoint import Checkpoint

#: The seed's rule of thumb: this many structural deltas or fewer means a good donor choice.
GOOD_DONOR_MAX_STRUCTURAL = 3


@dataclass
class Plan:
    """Everything ``import-model plan`` reports."""

    model: str
    architecture: str | None
    model_type: str | None
    native: list[dict[str, Any]] = field(default_factory=list)
    serve_command: str | None = None
    anatomy: Anatomy | None = None
    ranking: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    forced: bool = False
    default: DefaultPlan | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_native(self) -> bool:
        return bool(self.native)

    @property
    def deltas(self) -> list:
        return self.chosen.deltas if self.chosen else []

    @property
    def structural_deltas(self) -> int:
        return sum(1 for delta in self.deltas if delta.weight >= STYLE)

    @property
    def verdict(self) -> str:
        if self.chosen is None:
            return "no donor could be compared"
        count = self.structural_deltas
        if count <= GOOD_DONOR_MAX_STRUCTURAL:
            return f"{count} structural delta(s): a good donor choice"
        return f"{count} structural deltas: expect to rewrite whole classes of {self.chosen.donor.slug}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "architecture": self.architecture, "model_type": self.model_type,
            "native": self.native, "serve_command": self.serve_command,
            "anatomy": self.anatomy.as_dict() if self.anatomy else None,
            "ranking": [c.as_dict() for c in self.ranking],
            "donor": self.chosen.as_dict() if self.chosen else None,
            "donor_forced": self.forced,
            "deltas": [d.as_dict() for d in self.deltas],
            "verdict": self.verdict if not self.is_native else None,
            "default_plan": self.default.as_dict() if self.default else None,
            "skipped_donors": self.skipped, "notes": self.notes,
        }


def architecture_of(config: dict) -> str | None:
    archs = config.get("architectures") if isinstance(config, dict) else None
    if isinstance(archs, list) and archs and isinstance(archs[0], str) and archs[0].isidentifier():
        return archs[0][:120]
    return None


def make_plan(model: str, config: dict, checkpoint: Checkpoint | None, donor: str | None = None,
              use_cache: bool = True) -> Plan:
    """Plan the port of ``model``; a natively served architecture stops at the serve command."""
    config = config if isinstance(config, dict) else {}
    architecture = architecture_of(config)
    model_type = config.get("model_type") if isinstance(config.get("model_type"), str) else None
    plan = Plan(model, architecture, model_type[:80] if model_type else None)
    natives = registry.find_native(architecture) if architecture else []
    if natives and donor is None:
        plan.native = native_entries(natives, config)
        plan.serve_command = registry.serve_command(model)
        return plan
    plan.anatomy = build_anatomy(config, checkpoint)
    plan.notes.extend(plan.anatomy.notes)
    donors = load_donors(use_cache=use_cache)
    plan.skipped = [{"slug": d.slug, "architecture": d.architecture, "reason": d.skipped} for d in donors if d.skipped]
    plan.ranking = rank(plan.anatomy, donors)
    if donor is not None:
        plan.chosen, plan.forced = _forced(plan.anatomy, donors, donor, plan.ranking), True
    else:
        plan.chosen = next((c for c in plan.ranking if c.excluded is None), None)
    if plan.chosen is None:
        plan.notes.append("no donor anatomy could be read; check the MAX and transformers installs")
    encodings = plan.chosen.donor.encodings if plan.chosen else []
    plan.default = default_plan(config, checkpoint, encodings, plan.chosen.donor.slug if plan.chosen else None,
                                plan.anatomy.estimated_parameters)
    return plan


def _forced(target: Anatomy, donors: list[DonorInfo], wanted: str, ranking: list[Candidate]) -> Candidate:
    """The donor the user named (slug or HF class), scored even if the ranking excluded it."""
    matches = [d for d in donors if wanted in (d.slug, d.architecture)]
    if not matches:
        slugs = sorted({d.slug for d in donors if not d.skipped})
        raise UserError(f"--donor {wanted[:60]}: not a donor of the installed MAX; choose one of {', '.join(slugs)}")
    readable = [d for d in matches if d.anatomy is not None and not d.skipped]
    if not readable:
        raise UserError(f"--donor {wanted[:60]} cannot be compared: {matches[0].skipped}")
    chosen = readable[0]
    existing = next((c for c in ranking if c.donor is chosen), None)
    if existing is not None:
        return existing
    assert chosen.anatomy is not None
    deltas = compare(target, chosen.anatomy)
    return Candidate(chosen, score(deltas), deltas)


def top(plan: Plan, count: int = TOP) -> list[Candidate]:
    """The ranking rows to show: the best eligible donors."""
    return [c for c in plan.ranking if c.excluded is None][:count]
