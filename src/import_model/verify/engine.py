"""The parity engine: HF reference vs MAX port, tap by tap, prefill and decode, on the CPU.

Order of work, cheapest check first: the port's registration must name the
checkpoint's class, the port must not still be the unmodified donor of a
model MAX does not ship, then (real weights only) the HF oracle must produce
sane text, and only then is the port's graph compiled and compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from import_model.errors import UserError
from import_model.port.native_copy import registered_names, unmodified_donor
from import_model.recon import registry
from import_model.recon.native_caveats import longrope_original
from import_model.source import LocalSource, load_config
from import_model.source.config_keys import context_length
from import_model.verify import parity
from import_model.verify import routing as routing_parity
from import_model.verify.hf_reference import HFReference, tap_names
from import_model.verify.oracle import oracle_messages

#: Prompts the twin is checked on: short, medium, and one longer than any twin's sliding window.
DEFAULT_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    " ".join(["Rivers carry water from the mountains to the sea, and along the way they shape valleys,"
              " feed forests and give cities a reason to exist."] * 3),
)


@dataclass
class VerifyOptions:
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    decode_steps: int = 3
    rel_l2: float = parity.DEFAULT_REL_L2
    min_cosine: float = parity.DEFAULT_MIN_COSINE
    max_length: int = 512
    #: Chat-formatted prompts whose greedy text must match HF token for token (real weights).
    greedy_prompts: tuple[str, ...] = ()
    greedy_tokens: int = 16
    #: Let transformers run modeling code shipped in the checkpoint's repository (auto_map).
    trust_remote_code: bool = False


@dataclass
class VerifyResult:
    checkpoint: str
    port_dir: str
    architecture: str
    verdict: parity.Verdict
    tap_order: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    greedy_text: list[dict[str, Any]] = field(default_factory=list)
    #: per MoE layer: tokens whose chosen experts match HF's (empty for a dense model)
    routing: list[routing_parity.LayerRouting] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint, "port_dir": self.port_dir, "architecture": self.architecture,
            "tap_order": self.tap_order, "timings": self.timings, "prompts": self.prompts, "notes": self.notes,
            "greedy_text": self.greedy_text, "routing": [layer.as_dict() for layer in self.routing],
            "routing_summary": routing_parity.summary(self.routing) if self.routing else None,
            **self.verdict.as_dict(),
        }


def preflight(checkpoint: Path, port_dir: Path) -> tuple[dict[str, Any], str]:
    """Checks that need no compile: the port exists, names the checkpoint's class, and is not the bare donor."""
    if not (port_dir / "__init__.py").is_file():
        raise UserError(f"{port_dir} is not a port: it has no __init__.py (pass the <output_dir>/<slug> folder)")
    config_path = checkpoint / "config.json"
    config = load_config(LocalSource(checkpoint))  # bounded, a JSON object, or one line naming the problem
    archs = config.get("architectures")
    architecture = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    if architecture is None:
        raise UserError(f"{config_path} names no architectures[0]; MAX could not pick the port")
    names = registered_names(port_dir)
    if architecture not in names:
        raise UserError(f"the port registers {', '.join(names) or 'nothing'} but {config_path} says {architecture}; "
                        "make arch.py's name equal architectures[0]")
    donor = unmodified_donor(port_dir)
    if donor is not None and not registry.native_class(config):
        raise UserError(f"{port_dir} is still the unmodified {donor} donor while {config.get('model_type')} is not a "
                        "model MAX ships: implement the delta list (import-model plan) before verifying")
    return config, architecture


def run_verify(checkpoint: Path, port_dir: Path, options: VerifyOptions,
               progress: Callable[[str], None] = lambda _m: None) -> VerifyResult:
    import time

    from transformers import AutoTokenizer

    from import_model.verify.max_runner import MaxPort

    config, architecture = preflight(checkpoint, port_dir)
    progress("loading the HF reference (float32, CPU)")
    reference = HFReference.load(checkpoint, options.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), trust_remote_code=options.trust_remote_code) \
        if ships_tokenizer(checkpoint) else None
    absent = reference.absent_taps()
    order = [tap for tap in tap_names(reference.num_layers) if tap not in absent]
    progress("building the port's graph in MAX with taps (a cold compile takes minutes on a small CPU)")
    max_length = max_length_for(config, options.max_length)
    port = MaxPort(checkpoint, port_dir, max_length=max_length)
    result = VerifyResult(str(checkpoint), str(port_dir), architecture, parity.Verdict(False), order,
                          timings={"max_build_s": round(port.build_seconds, 2)})
    result.notes.extend(reference.notes)
    if absent:
        result.notes.append(f"the HF model has no module for {', '.join(absent)}: not compared there")
    if tokenizer is None:
        result.notes.append("the checkpoint ships no tokenizer: each prompt is a fixed run of token ids as long as "
                            "its text in characters, and no greedy text is decoded")
    if not port.echo:
        result.notes.append("the port's model does not implement echo (every position's logits), so taps it "
                            "computes for the last prompt position only (head, logits) are compared there")
    diffs: list[parity.TapDiff] = []
    greedy: list[bool] = []
    routes: dict[int, routing_parity.LayerRouting] = {}
    start = time.perf_counter()
    try:
        for number, prompt in enumerate(options.prompts):
            ids = [int(i) for i in tokenizer(prompt)["input_ids"]] if tokenizer is not None else \
                id_prompt(len(prompt), int(config.get("vocab_size") or 2))
            if len(ids) + options.decode_steps > max_length:  # a model with a short context: the prompt fits it
                ids = ids[:max(1, max_length - options.decode_steps)]
                result.notes.append(f"prompt {number + 1} cut to {len(ids)} tokens: the model's context is "
                                    f"{max_length}")
            progress(f"prompt {number + 1}/{len(options.prompts)}: {len(ids)} tokens, {options.decode_steps} decode steps")
            steps = port.run(ids, options.decode_steps)
            sequence = list(ids)
            hf_tokens, max_tokens = [], []
            for step_index, step in enumerate(steps):
                ref = reference.run(sequence)
                for tap in order:
                    got = step.logits if tap == "logits" else step.taps.get(tap)
                    last_only = step_index > 0 or (not port.echo and got is not None and len(got) == 1 < len(ids))
                    rows = slice(-1, None) if last_only else slice(None)
                    diffs.append(parity.compare_tap(number, step_index, tap, ref[tap][rows], got,
                                                    options.rel_l2, options.min_cosine))
                _tally_routing(routes, ref, step.taps)
                hf_tokens.append(int(np.argmax(ref["logits"][-1])))
                max_tokens.append(step.next_token)
                sequence.append(step.next_token)
            greedy.append(hf_tokens == max_tokens)
            result.prompts.append({"prompt": prompt[:80], "tokens": len(ids), "hf_greedy": hf_tokens,
                                   "max_greedy": max_tokens})
        if options.greedy_prompts and tokenizer is not None:
            progress(f"greedy text, {options.greedy_tokens} tokens on {len(options.greedy_prompts)} chat prompts")
            result.greedy_text = _greedy_text(port, reference, tokenizer, options.greedy_prompts,
                                              options.greedy_tokens)
            greedy += [row["match"] for row in result.greedy_text]
    finally:
        port.close()
    result.timings["compare_s"] = round(time.perf_counter() - start, 2)
    result.routing = [routes[index] for index in sorted(routes)]
    divergent = sum(layer.divergent for layer in result.routing)
    if divergent:
        result.notes.append(f"routing: {divergent} token-layer(s) chose other experts than HF with no near-tie in "
                            "the router's scores")
    result.verdict = parity.verdict(diffs, order, greedy)
    return result


def _tally_routing(routes: dict[int, routing_parity.LayerRouting], ref: dict[str, np.ndarray],
                   got: dict[str, np.ndarray]) -> None:
    """Add one execution's expert choices, per MoE layer both sides report, to ``routes``."""
    for index in set(routing_parity.routed_layers(ref)) & set(routing_parity.routed_layers(got)):
        layer = routes.setdefault(index, routing_parity.LayerRouting(index))
        routing_parity.tally(layer, ref[f"{routing_parity.INDICES_TAP}{index}"],
                             got[f"{routing_parity.INDICES_TAP}{index}"], got.get(f"{routing_parity.CHOICE_TAP}{index}"))


#: Files any transformers tokenizer is loaded from; a checkpoint with none of them ships no tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "sentencepiece.bpe.model")


def ships_tokenizer(checkpoint: Path) -> bool:
    return any((checkpoint / name).is_file() for name in TOKENIZER_FILES)


def id_prompt(length: int, vocab_size: int) -> list[int]:
    """A fixed, spread-out run of token ids for a checkpoint with no tokenizer (ids 0-2 left out: often special)."""
    span = max(vocab_size - 3, 1)
    return [3 + (i * 7919 + 17) % span for i in range(max(length, 1))]


def _greedy_text(port: Any, reference: HFReference, tokenizer: Any, prompts: tuple[str, ...],
                 tokens: int) -> list[dict[str, Any]]:
    """Greedy continuations from HF and from the port on the model's prompt format, token for token."""
    rows = []
    for prompt in prompts:
        ids = _prompt_ids(tokenizer, prompt, chat=True)
        hf = reference.greedy(ids, tokens)
        got = [step.next_token for step in port.run(ids, tokens - 1)]
        rows.append({"prompt": prompt, "hf": hf, "max": got, "hf_text": tokenizer.decode(hf),
                     "max_text": tokenizer.decode(got), "match": hf == got})
    return rows


def _prompt_ids(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    """``prompt`` as the oracle asks it (after its worked example turn) on a chat model, else as plain text."""
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(oracle_messages(prompt), add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(prompt)["input_ids"]]


def max_length_for(config: dict[str, Any], wanted: int) -> int:
    """The context MAX is built for: ``wanted`` within the model's own context, or a LongRoPE model's original
    context when that is longer.

    MAX's LongRoPE table has a long-factor part of ``2 * max_length - original_max_position_embeddings`` rows,
    which must not be negative; the prompts stay shorter than the original context, so both sides use the short
    factors.
    """
    original = longrope_original(config)
    if isinstance(original, int) and original >= wanted:
        return original
    limit = context_length(config)
    return min(wanted, limit) if limit else wanted  # CTRL: 256 positions

