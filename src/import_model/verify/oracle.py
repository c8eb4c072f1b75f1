"""Sanity of the HF reference itself, before anything is compared against it.

A port tuned against a broken oracle is wasted work. With real weights we run
HF alone on the model's intended prompt format (its chat template when it has
one) and flag output that is degenerate (one token or n-gram repeated, or the
question echoed back instead of answered) or a next-token distribution that is
nearly uniform.

Each question follows one worked example turn. A pretrained base model that
ships its family's chat template (Gemma 3's pretrained checkpoints do) only
echoes a bare question back; after one example, base and instruction-tuned
models alike answer in the turn format, so the check tells a broken reference
(tokenizer, template, weights) from a model that was never tuned to chat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ORACLE_PROMPTS = ("What is the capital of France?", "What is the largest planet in the solar system?")
#: The worked turn (question, answer) before each oracle question.
ORACLE_EXAMPLE = ("What is the capital of Italy?", "The capital of Italy is Rome.")
#: Entropy above this fraction of log(vocab) means the model is guessing.
MAX_ENTROPY_FRACTION = 0.9
#: A generation whose most common 3-gram covers this share of it is degenerate.
MAX_REPEAT_SHARE = 0.5


@dataclass
class OracleCheck:
    sane: bool
    samples: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_oracle(reference: Any, tokenizer: Any, tokens: int = 24) -> OracleCheck:
    import torch

    from import_model.verify.engine import _prompt_ids

    check = OracleCheck(sane=True)
    for prompt in ORACLE_PROMPTS:
        ids = _prompt_ids(tokenizer, prompt, chat=True)
        with torch.no_grad():
            logits = reference.model(torch.tensor([ids])).logits[0, -1].float()
        probs = torch.softmax(logits, -1)
        entropy = float(-(probs * torch.log(probs.clamp_min(1e-30))).sum())
        fraction = entropy / math.log(logits.shape[-1])
        generated = reference.greedy(ids, tokens)
        share = repeat_share(generated)
        text = tokenizer.decode(generated, skip_special_tokens=True)
        check.samples.append({"prompt": prompt, "text": text, "entropy_fraction": round(fraction, 3),
                              "repeat_share": round(share, 3)})
        if fraction > MAX_ENTROPY_FRACTION:
            check.problems.append(f"near-uniform next-token distribution on {prompt!r} (entropy {fraction:.0%} of max)")
        if share > MAX_REPEAT_SHARE:
            check.problems.append(f"degenerate repetition on {prompt!r}: {text[:60]!r}")
        elif echoes(prompt, text):
            check.problems.append(f"the answer to {prompt!r} opens by repeating the question: {text[:60]!r}")
    check.sane = not check.problems
    return check


def oracle_messages(prompt: str) -> list[dict[str, str]]:
    """The chat turns an oracle question is asked in: the worked example, then the question."""
    question, answer = ORACLE_EXAMPLE
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer},
            {"role": "user", "content": prompt}]


def echoes(prompt: str, text: str) -> bool:
    """The generated text opens by restating the question (letters and digits compared, case and spacing ignored).

    Only the opening counts: a small model that answers and then rambles on into a new question has answered.
    """
    def letters(value: str) -> str:
        return "".join(ch for ch in value.lower() if ch.isalnum())

    return len(letters(prompt)) >= 8 and letters(text).startswith(letters(prompt))


def repeat_share(tokens: list[int], n: int = 3) -> float:
    """Share of a sequence covered by its most frequent n-gram (0 for sequences too short to tell)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if len(grams) < 4:
        return 0.0
    best = max(grams.count(g) for g in set(grams))
    return best * n / len(tokens) if best > 1 else 0.0
