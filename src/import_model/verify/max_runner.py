"""Run a port in MAX on the CPU in float32, with taps at the same places as the HF reference.

Taps come from MAX's own layer-hook API (``max.nn.layer.add_layer_hook``):
while the pipeline builds its graph, a hook records every layer's output
value; when the top-level model (the module that owns ``layers`` and a head)
finishes, the hook adds a debug-print op for the embedding, each block, the
final norm and the head. The session then writes each printed tensor to a
``.max`` file per execution (``BINARY_MAX_CHECKPOINT``). The port's own code
is untouched and its outputs are unchanged, so one debug build of the graph
serves prefill and decode, and any architecture built from ``max.nn`` layers
gets taps without edits.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from import_model.errors import UserError
from import_model.max_cpu import one_device_collective_patches, patched
from import_model.verify.routing import CHOICE_TAP, INDICES_TAP

#: Attribute names of the tapped modules on MAX's top-level model, first match wins.
MAX_TAP_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "embed": ("embed_tokens", "embedding", "tok_embeddings"),
    "layers": ("layers",),
    "final_norm": ("norm", "final_norm", "norm_f"),
    "lm_head": ("lm_head", "output"),
}
_LABEL = "imtap__{name}__{call}"


class MaxBuildError(UserError):
    """The port failed to import, build or compile; ``details`` keeps MAX's own message."""

    def __init__(self, step: str, details: str) -> None:
        super().__init__(f"{step} failed: {headline(details)[:200]} (full message in the verify report)")
        self.step = step
        self.details = details


def headline(details: str) -> str:
    """The most telling line of MAX's message: a failed kernel constraint, else the last line that is not advice."""
    lines = [ln.strip() for ln in details.strip().splitlines() if ln.strip()]
    constraint = next((ln.split("constraint failed:", 1)[1].strip() for ln in lines if "constraint failed:" in ln), None)
    if constraint:
        return f"kernel constraint: {constraint}"
    telling = [ln for ln in lines if not ln.startswith(("For more detailed", "Please file an issue"))]
    return telling[-1] if telling else "unknown error"


@dataclass
class StepOutput:
    """One execution: the rows it computed (all prompt rows at prefill, one at decode)."""

    position: int
    taps: dict[str, np.ndarray]
    logits: np.ndarray
    next_token: int
    seconds: float


@dataclass
class _TapHook:
    """Collects layer outputs during graph building and prints the tapped ones."""

    calls: dict[int, list[Any]] = field(default_factory=dict)
    #: id(router) -> per call, (chosen expert ids, the scores the top-k was taken over or None)
    routes: dict[int, list[tuple[Any, Any]]] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    num_layers: int = 0

    def __call__(self, layer: Any, args: Any, _kwargs: Any, outputs: Any) -> None:
        from max.graph import TensorValue
        from max.nn.moe import MoEGate

        value = outputs[0] if isinstance(outputs, (tuple, list)) and outputs else outputs
        if isinstance(value, TensorValue):
            self.calls.setdefault(id(layer), []).append(value)
        if isinstance(layer, MoEGate) and isinstance(value, TensorValue):
            # a router returns (expert ids, weights); a port's router also gives the scores it chose from
            route = getattr(layer, "route", None)
            choice = route(*args)[2] if callable(route) and args else None
            self.routes.setdefault(id(layer), []).append((value, choice))
        if self._is_root(layer):
            self._emit(layer)
        return None

    @staticmethod
    def _is_root(layer: Any) -> bool:
        layers = _attr(layer, MAX_TAP_ATTRIBUTES["layers"])
        return bool(layers is not None and hasattr(layers, "__len__") and len(layers)
                    and _attr(layer, MAX_TAP_ATTRIBUTES["lm_head"]) is not None)

    def _emit(self, root: Any) -> None:
        from max.graph import ops

        layers = list(_attr(root, MAX_TAP_ATTRIBUTES["layers"]))
        self.num_layers = len(layers)
        taps = [("embed", self._calls_of(root, "embed"))]
        taps += [(f"layer_{i}", self.calls.get(id(layer), [])) for i, layer in enumerate(layers)]
        taps += [("final_norm", self._calls_of(root, "final_norm")), ("lm_head", self._calls_of(root, "lm_head"))]
        taps += self._routing_taps(layers)
        for name, calls in taps:
            for call, value in enumerate(calls):
                label = _LABEL.format(name=name, call=call)
                ops.print(value, label=label)
                self.labels.append(label)
        self.calls.clear()
        self.routes.clear()

    def _routing_taps(self, layers: list[Any]) -> list[tuple[str, list[Any]]]:
        """Each MoE layer's chosen experts and, where its router gives them, the scores it chose from."""
        taps: list[tuple[str, list[Any]]] = []
        for index, layer in enumerate(layers):
            calls = next((self.routes[id(m)] for m in _modules_and_shards(layer) if id(m) in self.routes), None)
            if calls:
                taps.append((f"{INDICES_TAP}{index}", [chosen for chosen, _ in calls]))
                taps.append((f"{CHOICE_TAP}{index}", [choice for _, choice in calls if choice is not None]))
        return taps

    def _calls_of(self, root: Any, tap: str) -> list[Any]:
        """Recorded outputs of the tapped module, or of its first shard (``norm_shards[0]``).

        Models written for several devices (qwen3, gemma3) build the module and call per-device copies.
        """
        for name in MAX_TAP_ATTRIBUTES[tap]:
            shards = getattr(root, f"{name}_shards", None) or []
            for module in (getattr(root, name, None), *list(shards)[:1]):
                if module is not None and self.calls.get(id(module)):
                    return self.calls[id(module)]
        return []


def _modules_and_shards(layer: Any) -> Iterator[Any]:
    """The layer's modules, and those of the per-device copies it calls instead (qwen3's ``mlp_shards``)."""
    parts = [layer] + [shard for name, value in vars(layer).items() if name.endswith("_shards")
                       and isinstance(value, (list, tuple)) for shard in value]
    for part in parts:
        if hasattr(part, "named_modules"):
            yield from (module for _, module in part.named_modules())


@contextmanager
def _runtime_quiet() -> Iterator[None]:
    """Point file descriptors 1 and 2 at /dev/null while the runtime executes; errors still raise."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in saved:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _attr(obj: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


class MaxPort:
    """A port loaded in a MAX pipeline on CPU (float32), ready to run token ids with taps."""

    def __init__(self, checkpoint: Path, port_dir: Path | None, *, max_length: int = 512, taps: bool = True) -> None:
        """``port_dir`` None runs the checkpoint on MAX's own registration (a native baseline)."""
        self.tap_dir = Path(tempfile.mkdtemp(prefix="import-model-taps-"))
        self.hook = _TapHook()
        self._never_written: set[str] = set()
        self.echo = True  # False: the model returns only the last position's logits at prefill
        start = time.perf_counter()
        self._build(checkpoint, port_dir, max_length, taps)
        self.build_seconds = time.perf_counter() - start
        if taps and not self.hook.labels:
            raise MaxBuildError("tap placement", "the graph has no module with `layers` and a head to tap; "
                                "name them as in MAX_TAP_ATTRIBUTES")

    def _build(self, checkpoint: Path, port_dir: Path | None, max_length: int, taps: bool) -> None:
        os.environ.setdefault("MAX_SERVE_DISABLE_TELEMETRY", "1")
        try:
            from max.nn.layer import layer as max_layer
            from max.pipelines import AutoModel

            one_cpu = one_device_collective_patches(signal_buffers=True)  # GPU-minded donors (qwen3, gemma3)
        except Exception as exc:  # noqa: BLE001
            raise MaxBuildError("importing MAX", repr(exc)) from None
        if taps:
            max_layer.add_layer_hook(self.hook)
        try:
            self.model = self._auto_model(AutoModel, checkpoint, port_dir, max_length, one_cpu)
        finally:
            if taps and self.hook in max_layer._LAYER_HOOKS:
                max_layer._LAYER_HOOKS.remove(self.hook)
        self.pipeline = self.model.pipeline
        self.pipeline.session.set_debug_print_options("BINARY_MAX_CHECKPOINT", output_directory=str(self.tap_dir))

    def _auto_model(self, auto_model: Any, checkpoint: Path, port_dir: Path | None, max_length: int,
                    one_cpu: list[Any]) -> Any:
        """The pipeline with every position's logits (echo); a model that refuses echo is built without it.

        Such a model (MAX 26.7's mistral) refuses before its graph is built, so the retry costs no compile.
        """
        try:
            with patched(one_cpu):
                return auto_model(str(checkpoint), devices="cpu", quantization_encoding="float32",
                                  custom_architectures=[str(port_dir)] if port_dir else [], enable_echo=self.echo,
                                  max_length=max_length, max_batch_size=1)
        except Exception as exc:  # noqa: BLE001 - MAX raises many kinds while importing and compiling a port
            import traceback

            if self.echo and "implement enable echo" in str(exc):
                self.echo = False
                return self._auto_model(auto_model, checkpoint, port_dir, max_length, one_cpu)
            raise MaxBuildError("building the port's graph", "".join(traceback.format_exception(exc))) from None

    def run(self, ids: list[int], decode_steps: int) -> list[StepOutput]:
        """Prefill ``ids`` then ``decode_steps`` greedy steps through the KV cache."""
        from max.pipelines.context import TextContext, TokenBuffer

        model, kv = self.pipeline._pipeline_model, self.pipeline.kv_manager
        ctx = TextContext(max_length=len(ids) + decode_steps + 1, tokens=TokenBuffer(np.asarray(ids, np.int64)))
        kv.claim(ctx, replica_idx=0)
        steps: list[StepOutput] = []
        position = 0
        try:
            for _ in range(decode_steps + 1):
                kv.alloc(ctx).synchronize()
                batch = [[ctx]]
                inputs = model.prepare_initial_token_inputs(batch, kv_cache_inputs=kv.runtime_inputs(batch))
                start = time.perf_counter()
                with _runtime_quiet():  # the runtime announces each debug tensor it writes
                    out = model.execute(inputs)
                seconds = time.perf_counter() - start
                logits = out.logits.to_numpy().copy()
                token = int(np.argmax(logits[-1]))
                self._await_taps()
                steps.append(StepOutput(position, self._read_taps(), logits, token, seconds))
                position += len(ids) if position == 0 else 1
                ctx.update(token)
                kv.step(ctx)
        finally:
            kv.release(ctx)
        return steps

    def _await_taps(self, timeout_s: float = 20.0) -> None:
        """Wait until every tap the graph prints is on disk, each file's size unchanged between two looks.

        On a loaded machine the runtime may still be writing its debug tensors when ``execute`` returns; a tap
        read half-written (or not yet there) would show as a divergence. A label that never appears within
        ``timeout_s`` is not waited for again.
        """
        wanted = {f"{label}.max" for label in self.hook.labels} - self._never_written
        deadline = time.monotonic() + timeout_s
        seen: dict[str, int] = {}
        while True:
            sizes = {path.name: path.stat().st_size for path in self.tap_dir.glob("imtap__*.max")}
            if wanted <= sizes.keys() and sizes == seen:
                return
            if time.monotonic() > deadline:
                self._never_written |= wanted - sizes.keys()
                return
            seen = sizes
            time.sleep(0.02)

    def _read_taps(self) -> dict[str, np.ndarray]:
        """The tensors printed by the last execution.

        A module can be called more than once per graph: the head once for the last token and once
        for all rows, or a block whose subclass wraps the parent's call. Keep the call with the most
        rows, and among equals the last to finish, which is the outermost call.
        """
        from max.driver import load_max_buffer

        files = []
        for path in self.tap_dir.glob("imtap__*.max"):
            _, name, call = path.stem.split("__")
            files.append((name, int(call), path))
        taps: dict[str, np.ndarray] = {}
        for name, _call, path in sorted(files):
            value = np.asarray(load_max_buffer(str(path)).to_numpy(), dtype=np.float32).copy()
            value = value.reshape(-1, value.shape[-1]) if value.ndim > 1 else value
            if name not in taps or value.shape[0] >= taps[name].shape[0]:
                taps[name] = value
            path.unlink()
        return taps

    def close(self) -> None:
        shutil.rmtree(self.tap_dir, ignore_errors=True)
