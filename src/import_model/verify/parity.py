"""Tap-by-tap comparison of the MAX port against the HF reference, and the verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Default tolerances for float32 on both sides. A float32 copy of a native
#: architecture matches HF to a few 1e-6, so these leave two orders of margin.
DEFAULT_REL_L2 = 1e-4
DEFAULT_MIN_COSINE = 0.99999


@dataclass
class TapDiff:
    prompt: int
    step: int  # 0 = prefill, k = k-th decode step
    tap: str
    max_abs: float
    rel_l2: float
    cosine: float
    ok: bool
    top1_agree: float | None = None
    kl: float | None = None
    note: str = ""


@dataclass
class Verdict:
    passed: bool
    diffs: list[TapDiff] = field(default_factory=list)
    first_divergence: TapDiff | None = None
    greedy_match: list[bool] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "first_divergence": asdict(self.first_divergence) if self.first_divergence else None,
            "greedy_match": self.greedy_match,
            "diffs": [asdict(d) for d in self.diffs],
        }


def compare_tap(prompt: int, step: int, tap: str, ref: np.ndarray, got: np.ndarray | None,
                rel_l2_tol: float = DEFAULT_REL_L2, min_cosine: float = DEFAULT_MIN_COSINE) -> TapDiff:
    if got is None:
        return TapDiff(prompt, step, tap, float("inf"), float("inf"), 0.0, False, note="MAX produced no such tap")
    ref = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    got = got.reshape(-1, got.shape[-1]).astype(np.float64)
    if ref.shape != got.shape:
        return TapDiff(prompt, step, tap, float("inf"), float("inf"), 0.0, False,
                       note=f"shape {tuple(got.shape)} vs HF {tuple(ref.shape)}")
    delta = got - ref
    ref_norm = float(np.linalg.norm(ref))
    rel = float(np.linalg.norm(delta) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(delta))
    cos = _mean_row_cosine(ref, got)
    diff = TapDiff(prompt, step, tap, float(np.abs(delta).max()), rel, cos, rel <= rel_l2_tol and cos >= min_cosine)
    if tap == "logits":
        diff.top1_agree = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
        diff.kl = _mean_kl(ref, got)
        diff.ok = diff.ok and diff.top1_agree == 1.0
    return diff


def _mean_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return float(cos.min())


def _mean_kl(ref_logits: np.ndarray, got_logits: np.ndarray) -> float:
    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    p_log, q_log = log_softmax(ref_logits), log_softmax(got_logits)
    return float((np.exp(p_log) * (p_log - q_log)).sum(-1).mean())


def verdict(diffs: list[TapDiff], tap_order: list[str], greedy_match: list[bool]) -> Verdict:
    """Pass when every tap is within tolerance; the first divergence is the earliest tap in model order."""
    failing = [d for d in diffs if not d.ok]
    first = None
    if failing:
        rank = {name: i for i, name in enumerate(tap_order)}
        first = min(failing, key=lambda d: (d.step, rank.get(d.tap, len(rank)), d.prompt))
    return Verdict(passed=not failing and all(greedy_match), diffs=diffs, first_divergence=first,
                   greedy_match=greedy_match)
