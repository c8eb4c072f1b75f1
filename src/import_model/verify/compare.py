"""Compare a running ``max serve`` with the Hugging Face reference, position by position.

The server generates greedily over ``/v1/completions`` with ``logprobs`` and
``return_token_ids``; the HF model (float32, CPU) then reads the same prompt
ids plus the tokens MAX chose in one forward pass, so every position is judged
on the same prefix: the logprob MAX reported for its token against the one HF
gives it, and whether HF's own top-1 is that token. A per-layer snapshot of HF
(embedding and each block output: mean, std, max |x|) comes with it, to set
against taps from the port when something disagrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from import_model.errors import UserError

DEFAULT_PROMPTS = ("The quick brown fox jumps over", "In a hole in the ground there lived")
DEFAULT_TOKENS = 8
DEFAULT_TOLERANCE = 1e-3
DEFAULT_REQUEST_TIMEOUT = 300.0


# -- the server side ------------------------------------------------------------------


@dataclass
class Completion:
    """One greedy completion as the server reported it."""

    text: str
    token_ids: list[int] | None
    prompt_ids: list[int] | None
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]


class ServerClient:
    """The few OpenAI-compatible calls ``compare`` makes; every failure is a :class:`UserError` (exit 2)."""

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.base = f"http://{host}:{port}"
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))

    def close(self) -> None:
        self._client.close()

    def models(self) -> list[str]:
        data = self._request("GET", "/v1/models")
        return [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    def complete(self, model: str, prompt: str, tokens: int) -> Completion:
        body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "logprobs": 1,
                "ignore_eos": True, "return_token_ids": True, "stream": False}
        data = self._request("POST", "/v1/completions", json=body)
        return _parse_completion(data)

    def _request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        url = self.base + path
        try:
            response = self._client.request(method, url, **kw)
        except httpx.ConnectError:
            raise UserError(f"cannot reach max serve at {self.base} (connection refused); start it first, "
                            "e.g. `import-model serve MODEL --port-dir DIR --port N`") from None
        except httpx.TimeoutException:
            raise UserError(f"max serve at {self.base} did not answer {path} in time") from None
        except httpx.HTTPError as exc:
            raise UserError(f"max serve at {self.base}: {type(exc).__name__}: {str(exc)[:200]}") from None
        if response.status_code != 200:
            raise UserError(f"max serve at {self.base} answered {path} with HTTP {response.status_code}: "
                            f"{_error_text(response)}")
        try:
            data = response.json()
        except ValueError:
            raise UserError(f"max serve at {self.base} answered {path} with something that is not JSON") from None
        if not isinstance(data, dict):
            raise UserError(f"max serve at {self.base} answered {path} with unexpected JSON")
        return data


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300] or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return " ".join(str(error["message"]).split())[:300]
    return " ".join(str(data).split())[:300]


def _parse_completion(data: dict[str, Any]) -> Completion:
    try:
        choice = data["choices"][0]
        logprobs = choice.get("logprobs") or {}
        token_logprobs = [float(v) for v in logprobs.get("token_logprobs") or []]
        top = [dict(t) for t in logprobs.get("top_logprobs") or []]
        ids = choice.get("token_ids")
        prompt_ids = choice.get("prompt_token_ids")
        return Completion(
            text=str(choice.get("text") or ""),
            token_ids=[int(t) for t in ids] if ids is not None else None,
            prompt_ids=[int(t) for t in prompt_ids] if prompt_ids is not None else None,
            token_logprobs=token_logprobs,
            top_logprobs=top,
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UserError(f"the completion response has an unexpected shape ({type(exc).__name__}: {exc})") from None


def pick_model(served: Sequence[str], slug: str | None, base: str) -> str:
    """The model name to request: ``slug`` if the server serves it, else its only model."""
    if slug is None:
        if not served:
            raise UserError(f"max serve at {base} lists no models under /v1/models")
        return served[0]
    if slug not in served:
        raise UserError(f"max serve at {base} serves {', '.join(served) or 'nothing'}, not {slug!r}; "
                        "pass the name it was started with (--served-model-name, else the model path) as --slug")
    return slug


# -- the reference side -----------------------------------------------------------------


@dataclass
class Position:
    """One generated position: MAX's token and logprob against HF on the same prefix."""

    index: int
    token_id: int | None
    token: str
    max_logprob: float
    hf_logprob: float
    hf_top1_id: int
    hf_top1: str
    diff: float
    greedy_match: bool
    ok: bool


@dataclass
class LayerStat:
    tap: str
    mean: float
    std: float
    max_abs: float


@dataclass
class PromptResult:
    prompt: str
    prompt_ids: list[int]
    hf_prompt_ids: list[int] | None
    text: str
    positions: list[Position]
    layer_stats: list[LayerStat]
    notes: list[str] = field(default_factory=list)

    @property
    def prompt_ids_match(self) -> bool:
        return self.hf_prompt_ids is None or self.hf_prompt_ids == self.prompt_ids

    @property
    def passed(self) -> bool:
        return bool(self.positions) and self.prompt_ids_match and all(p.ok for p in self.positions)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(prompt_ids_match=self.prompt_ids_match, passed=self.passed)
        return data


@dataclass
class CompareResult:
    model: str
    server: str
    served_model: str
    tolerance: float
    prompts: list[PromptResult]

    @property
    def positions(self) -> list[Position]:
        return [p for r in self.prompts for p in r.positions]

    @property
    def max_abs_diff(self) -> float:
        diffs = [p.diff for p in self.positions]
        return max(diffs, key=lambda d: math.inf if math.isnan(d) else d) if diffs else math.nan

    @property
    def passed(self) -> bool:
        return bool(self.prompts) and all(r.passed for r in self.prompts)

    def first_failure(self) -> tuple[PromptResult, Position | None] | None:
        for result in self.prompts:
            if not result.prompt_ids_match or not result.positions:
                return result, None
            for position in result.positions:
                if not position.ok:
                    return result, position
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "server": self.server, "served_model": self.served_model,
            "tolerance": self.tolerance, "passed": self.passed, "positions": len(self.positions),
            "max_abs_logprob_diff": self.max_abs_diff,  # infinite (a token the server did not return): null in JSON
            "prompts": [r.as_dict() for r in self.prompts],
        }


class Reference:
    """The HF model and tokenizer of MODEL, float32 on the CPU."""

    def __init__(self, checkpoint: Path) -> None:
        from transformers.utils import logging as hf_logging

        from import_model.verify.hf_reference import HFReference

        hf_logging.disable_progress_bar()  # stderr carries our progress lines only
        self.hf = HFReference.load(checkpoint)
        self.tokenizer = _load_tokenizer(checkpoint)

    def encode(self, prompt: str) -> list[int] | None:
        if self.tokenizer is None:
            return None
        return [int(t) for t in self.tokenizer(prompt)["input_ids"]]

    def decode(self, token_id: int) -> str:
        if self.tokenizer is None:
            return f"<{token_id}>"
        return str(self.tokenizer.decode([token_id]))

    def judge(self, prompt: str, completion: Completion, tolerance: float) -> PromptResult:
        """Run HF over prompt + MAX's tokens once and compare every generated position."""
        hf_ids = self.encode(prompt)
        prompt_ids = completion.prompt_ids if completion.prompt_ids is not None else hf_ids
        if prompt_ids is None:
            raise UserError("the server returned no prompt token ids and MODEL has no tokenizer to make them")
        notes = _completion_notes(completion)
        token_ids = self._generated_ids(completion, prompt_ids, notes)
        known = [t for t in token_ids if t is not None]
        taps = self.hf.run(prompt_ids + known)
        logprobs = log_softmax(taps["logits"])
        last = len(logprobs) - 1
        positions = [self._position(j, tid, completion, logprobs[min(len(prompt_ids) - 1 + j, last)], tolerance)
                     for j, tid in enumerate(token_ids)]
        if hf_ids is not None and hf_ids != prompt_ids:
            notes.append(f"the server tokenized the prompt as {prompt_ids[:12]}..., HF as {hf_ids[:12]}...")
        return PromptResult(prompt=prompt, prompt_ids=prompt_ids, hf_prompt_ids=hf_ids, text=completion.text,
                            positions=positions, layer_stats=layer_stats(taps, self.hf.num_layers), notes=notes)

    def _generated_ids(self, completion: Completion, prompt_ids: list[int], notes: list[str]) -> list[int | None]:
        if completion.token_ids is not None:
            return list(completion.token_ids[: len(completion.token_logprobs)])
        notes.append("the server returned no token ids; MAX's tokens were matched by their text")
        return self._ids_from_text(completion, prompt_ids)

    def _ids_from_text(self, completion: Completion, prompt_ids: list[int]) -> list[int | None]:
        """Without ``token_ids``: HF's greedy token wherever its text is the one MAX reports, else unknown."""
        ids: list[int | None] = []
        sequence = list(prompt_ids)
        for j, chosen in enumerate(completion.token_logprobs):
            logits = self.hf.run(sequence)["logits"][-1]
            top1 = int(np.argmax(logits))
            text = _chosen_text(completion.top_logprobs[j] if j < len(completion.top_logprobs) else {}, chosen)
            if text is None or self.decode(top1) != text:
                ids.extend([None] * (len(completion.token_logprobs) - j))
                break
            ids.append(top1)
            sequence.append(top1)
        return ids

    def _position(self, index: int, token_id: int | None, completion: Completion, logprobs: np.ndarray,
                  tolerance: float) -> Position:
        top1 = int(np.argmax(logprobs))
        max_logprob = completion.token_logprobs[index]
        hf_logprob = float(logprobs[token_id]) if token_id is not None else math.nan
        diff = abs(max_logprob - hf_logprob)
        greedy = token_id == top1
        return Position(
            index=index, token_id=token_id, token=self.decode(token_id) if token_id is not None else "?",
            max_logprob=max_logprob, hf_logprob=hf_logprob, hf_top1_id=top1, hf_top1=self.decode(top1),
            diff=diff, greedy_match=greedy, ok=greedy and diff <= tolerance,
        )


def _completion_notes(completion: Completion) -> list[str]:
    if len(completion.token_logprobs) == 0:
        return ["the server returned no logprobs (is the overlap scheduler or speculative decoding on?)"]
    return []


def _chosen_text(top: dict[str, float], logprob: float) -> str | None:
    for text, value in top.items():
        if math.isclose(value, logprob, rel_tol=0.0, abs_tol=1e-6):
            return text
    return None


def _load_tokenizer(checkpoint: Path) -> Any:
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(checkpoint), trust_remote_code=False)
    except Exception:  # noqa: BLE001 - no tokenizer only costs readable token text
        return None


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (the reference's logits are float32)."""
    values = logits.astype(np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def layer_stats(taps: dict[str, np.ndarray], num_layers: int) -> list[LayerStat]:
    """Mean, std and max |x| of the embedding, every block output and the final norm, over all positions."""
    names = ["embed", *(f"layer_{i}" for i in range(num_layers)), "final_norm"]
    stats = []
    for name in names:
        if name in taps:
            values = taps[name].astype(np.float64)
            stats.append(LayerStat(tap=name, mean=float(values.mean()), std=float(values.std()),
                                   max_abs=float(np.abs(values).max())))
    return stats


def resolve_checkpoint(model: str, revision: str | None, progress: Any = None) -> Path:
    """MODEL as a local directory: itself, or the hub repo's config, tokenizer and safetensors files.

    A hub repo is fetched by :meth:`HubSource.download` into the import-model cache (by commit): every
    file under its byte budget, all of them within ``IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE``.
    """
    from import_model.source import open_source

    source = open_source(model, revision)
    if source.kind == "local":
        return Path(model).expanduser().resolve()
    from import_model.source.hub import HubSource  # huggingface_hub is imported only for hub models

    assert isinstance(source, HubSource)
    return source.download(progress=progress)


def run_compare(model: str, revision: str | None, client: ServerClient, slug: str | None,
                prompts: Sequence[str], tokens: int, tolerance: float, progress: Any = None) -> CompareResult:
    """Ask the server first (cheap, fails fast), then load HF and judge every completion."""
    served = pick_model(client.models(), slug, client.base)
    completions = []
    for prompt in prompts:
        if progress:
            progress(f"max serve: {tokens} greedy tokens for {prompt!r}")
        completions.append(client.complete(served, prompt, tokens))
    checkpoint = resolve_checkpoint(model, revision, progress)
    if progress:
        progress(f"loading the HF reference from {checkpoint} (float32, CPU)")
    reference = Reference(checkpoint)
    results = [reference.judge(p, c, tolerance) for p, c in zip(prompts, completions, strict=True)]
    return CompareResult(model=model, server=client.base, served_model=served, tolerance=tolerance, prompts=results)
