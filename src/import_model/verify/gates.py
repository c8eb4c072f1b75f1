"""Gates before serving: cheap checks that stop the line, each PASS / WARN / FAIL / SKIP with one line.

Three phases, cheapest first, each including the ones before it:

- ``preflight`` reads files only: walls, ``arch.py``'s name against
  ``architectures[0]``, whether the graph is still the unmodified donor, the
  port's default encoding against the checkpoint's dtype, and the checkpoint's
  shards and index.
- ``smoke`` is the seed's four local checks: the port imports in a fresh
  interpreter, its module tree builds (a dry build, no compile), the weight
  adapter's output matches the graph's weight names and shapes, and the
  checkpoint's format and dtypes are ones the port's encodings can load.
- ``verify`` runs the parity engine (compiles the graph: minutes on a CPU),
  only when nothing before it failed.

The gates are rows of :data:`GATES`; :func:`run_gates` is the only code that walks it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from import_model.errors import UserError
from import_model.port import renames
from import_model.port.native_copy import registered_names, unmodified_donor
from import_model.port.registration import port_encodings
from import_model.recon import registry
from import_model.safe_io import MAX_PORT_FILE_BYTES, FileRefused, read_bounded_text
from import_model.source import Checkpoint, ModelSource, load_checkpoint, load_config, open_source

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
PHASES = ("preflight", "smoke", "verify")
#: ``--phase`` choices and the phases each runs.
PHASE_CHOICES: dict[str, tuple[str, ...]] = {
    "preflight": PHASES[:1],
    "smoke": PHASES[:2],
    "verify": PHASES,
    "all": PHASES,
}
IMPORT_SMOKE_TIMEOUT_S = 600

#: Safetensors dtype -> the MAX encoding that stores it as is.
DTYPE_ENCODING = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F8_E4M3": "float8_e4m3fn"}
#: MAX encoding -> safetensors float dtypes it loads (MAX casts float32 <-> bfloat16 at load time).
ENCODING_LOADS: dict[str, frozenset[str]] = {
    "float32": frozenset({"F32", "BF16"}),
    "bfloat16": frozenset({"BF16", "F32"}),
    "float16": frozenset({"F16"}),
    "float8_e4m3fn": frozenset({"F8_E4M3", "BF16", "F32"}),
}
#: Encodings that only make sense when the checkpoint already holds this dtype (MAX does not quantize on load).
ENCODING_NEEDS = {"float8_e4m3fn": "F8_E4M3"}
#: Dtypes of index / mask buffers: not weights an encoding has to load.
NON_FLOAT_DTYPES = frozenset({"I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL"})
#: Encodings that run on the CPU (``import-model verify`` and the dry build use float32).
CPU_ENCODING = "float32"


@dataclass
class Gate:
    phase: str
    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "gate": self.name, "status": self.status, "detail": self.detail, **self.data}


@dataclass
class GateContext:
    """What the gates read, loaded once; later gates reuse what earlier ones computed."""

    model: str
    port_dir: Path
    source: ModelSource
    config: dict[str, Any]
    checkpoint: Checkpoint | None
    checkpoint_error: str | None
    progress: Callable[[str], None]
    results: list[Gate] = field(default_factory=list)
    dry: renames.GraphWeights | None = None
    dry_is_twin: bool = False

    @property
    def architecture(self) -> str | None:
        archs = self.config.get("architectures")
        return archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None

    def status_of(self, name: str) -> str | None:
        return next((g.status for g in self.results if g.name == name), None)


Outcome = tuple[str, str] | tuple[str, str, dict[str, Any]]
GateFn = Callable[[GateContext], Outcome]


# --------------------------------------------------------------------------- preflight


def gate_walls(ctx: GateContext) -> Outcome:
    from import_model.recon import walls

    findings = walls.scan_walls(ctx.config, ctx.checkpoint, ctx.source.files())
    blocks = [f.code for f in findings if f.level == walls.BLOCK]
    warns = [f.code for f in findings if f.level == walls.WARN]
    data = {"findings": [{"level": f.level, "code": f.code, "reason": f.reason} for f in findings]}
    if blocks:
        return FAIL, f"blocked by {', '.join(blocks)} (import-model check-walls for reasons)", data
    if warns:
        return WARN, f"warnings: {', '.join(warns)} (import-model check-walls for reasons)", data
    return PASS, f"no walls ({len(findings)} informational finding(s))", data


def gate_arch_name(ctx: GateContext) -> Outcome:
    names = registered_names(ctx.port_dir)
    if ctx.architecture is None:
        return FAIL, "config.json names no architectures[0]; MAX could not pick the port"
    if ctx.architecture in names:
        return PASS, f"arch.py registers {ctx.architecture} = config.json architectures[0]"
    return FAIL, (f"arch.py registers {', '.join(names) or 'nothing'} but config.json says {ctx.architecture}; "
                  "set SupportedArchitecture(name=...) to architectures[0]")


def gate_donor(ctx: GateContext) -> Outcome:
    from import_model.port.package import open_delta_markers

    donor = unmodified_donor(ctx.port_dir)
    if donor is None:
        open_rows = open_delta_markers(ctx.port_dir)
        if open_rows and not registry.native_class(ctx.config):
            return FAIL, (f"{len(open_rows)} delta row(s) still marked TODO ({', '.join(open_rows[:6])}): the graph "
                          "computes the donor's behaviour there; implement them, then remove the markers")
        return PASS, "the graph code differs from every native MAX donor and no TODO(delta) marker is left"
    native = registry.native_class(ctx.config)
    if native:
        return PASS, f"an unmodified {donor} copy, and {native} is native to MAX (a ground-truth port)"
    return FAIL, (f"the port is still the unmodified {donor} donor while {ctx.config.get('model_type')} is not a model "
                  "MAX ships: implement the delta list (import-model plan) before serving or verifying")


def gate_encoding(ctx: GateContext) -> Outcome:
    default, supported = port_encodings(ctx.port_dir)
    dtype = dominant_dtype(ctx.checkpoint)
    data = {"default_encoding": default, "supported_encodings": supported, "checkpoint_dtype": dtype}
    if dtype is None:
        why = "no float tensors in the checkpoint headers" if ctx.checkpoint else "no checkpoint headers (see checkpoint)"
        return SKIP, f"{why} to compare with", data
    if default is None or not supported:
        return WARN, f"could not read the port's default/supported encodings statically (checkpoint is {dtype})", data
    loaders = [e for e in supported if encoding_loads(e, [dtype])]
    if not loaders:
        return FAIL, (f"the checkpoint is {dtype} but the port supports only {', '.join(supported)}: none loads it; "
                      f"add {DTYPE_ENCODING.get(dtype, 'a float encoding')!r} to SUPPORTED_ENCODINGS"), data
    notes = []
    if not encoding_loads(default, [dtype]):
        notes.append(f"the checkpoint is {dtype} but the port's default encoding is {default}: `max serve` without "
                     f"--quantization-encoding asks for {default}; set DEFAULT_ENCODING = "
                     f"{DTYPE_ENCODING.get(dtype, loaders[0])!r}")
    if CPU_ENCODING not in supported:
        notes.append(f"no {CPU_ENCODING} in SUPPORTED_ENCODINGS: on CPU only float32 works, so the dry build and "
                     "verify cannot run")
    if notes:
        return WARN, "; ".join(notes), data
    return PASS, f"checkpoint {dtype}; default encoding {default} loads it (supported: {', '.join(supported)})", data


def encoding_loads(encoding: str, dtypes: list[str]) -> bool:
    """Whether MAX loads tensors of all ``dtypes`` at ``encoding`` (casting float32 <-> bfloat16 if needed)."""
    needed = ENCODING_NEEDS.get(encoding)
    loads = ENCODING_LOADS.get(encoding, frozenset())
    return bool(dtypes) and all(d in loads for d in dtypes) and (needed is None or needed in dtypes)


def gate_checkpoint(ctx: GateContext) -> Outcome:
    if ctx.checkpoint_error:
        return FAIL, ctx.checkpoint_error
    ckpt = ctx.checkpoint
    if ckpt is None or ckpt.weight_format != "safetensors":
        fmt = ckpt.weight_format if ckpt else "none"
        return FAIL, f"no safetensors weights (format: {fmt}); MAX ports load safetensors"
    unlisted = _index_keys_missing(ctx.source, ckpt)
    data = {"shards": ckpt.shards, "tensors": len(ckpt.tensors), "bytes": ckpt.total_bytes}
    if unlisted:
        return FAIL, (f"the shard index lists {len(unlisted)} tensor(s) no shard header holds (e.g. {unlisted[0]}); "
                      "re-download the checkpoint"), data
    return PASS, f"{len(ckpt.shards)} safetensors shard(s) complete, {len(ckpt.tensors)} tensors", data


def _index_keys_missing(source: ModelSource, checkpoint: Checkpoint) -> list[str]:
    from import_model.source.checkpoint import INDEX_FILE

    if INDEX_FILE not in source.files():
        return []
    weight_map = source.read_json(INDEX_FILE, required=True).get("weight_map") or {}
    return [k for k in weight_map if isinstance(k, str) and k not in checkpoint.tensors]


# --------------------------------------------------------------------------- smoke


def gate_import_smoke(ctx: GateContext) -> Outcome:
    slug = ctx.port_dir.name
    if not slug.isidentifier():
        return FAIL, f"the port folder {slug!r} is not an importable module name"
    ctx.progress(f"importing {slug} in a fresh interpreter")
    result = _import_in_subprocess(ctx.port_dir)
    if "error" in result:
        return FAIL, f"`import {slug}` failed: {result['error']}"
    where = result.get("file") or ""
    if not where or Path(where).resolve().parent != ctx.port_dir.resolve():
        return FAIL, f"`import {slug}` found {where or 'a namespace package'}, not {ctx.port_dir}; rename the slug"
    archs = result.get("architectures")
    if not archs:
        return FAIL, f"{slug} imports but exposes no ARCHITECTURES list (MAX needs `ARCHITECTURES = [...]`)"
    return PASS, f"`import {slug}` works in a fresh interpreter; ARCHITECTURES = {', '.join(archs)}"


_IMPORT_PROBE = """
import importlib, json, sys, traceback
sys.path.insert(0, sys.argv[1])
try:
    module = importlib.import_module(sys.argv[2])
    archs = getattr(module, "ARCHITECTURES", None)
    names = [getattr(a, "name", repr(a)) for a in archs] if isinstance(archs, list) else None
    print(json.dumps({"file": getattr(module, "__file__", None), "architectures": names}))
except BaseException as exc:
    lines = traceback.format_exception_only(type(exc), exc)
    print(json.dumps({"error": lines[-1].strip()[:300]}))
"""


def _import_in_subprocess(port_dir: Path) -> dict[str, Any]:
    env = dict(os.environ, MAX_SERVE_DISABLE_TELEMETRY="1", PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, str(port_dir.parent.resolve()), port_dir.name],
                              capture_output=True, text=True, timeout=IMPORT_SMOKE_TIMEOUT_S, env=env,
                              cwd=str(port_dir.parent))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {IMPORT_SMOKE_TIMEOUT_S} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"the interpreter exited {proc.returncode}: {tail[:300]}"}


def gate_dry_build(ctx: GateContext) -> Outcome:
    if ctx.status_of("import-smoke") == FAIL:
        return SKIP, "the port does not import"
    try:
        folder, ctx.dry_is_twin = renames.checkpoint_for_dry_build(ctx.source, ctx.config, ctx.checkpoint, ctx.progress)
        ctx.progress("dry-building the port's module tree (no compile)")
        ctx.dry = renames.dry_build(folder, ctx.port_dir)
    except renames.DryBuildError as exc:
        if exc.needs_gpu:
            return SKIP, (f"the port's graph creates GPU devices even to be built ({exc.message}): MAX ships this "
                          "donor for GPUs only; run the smoke gates on a GPU machine")
        return FAIL, exc.message
    except UserError as exc:
        return FAIL, exc.message
    dry = ctx.dry
    on = "the model's tiny twin" if ctx.dry_is_twin else "the checkpoint"
    data = {"module": dry.module, "weights": len(dry.expected), "seconds": dry.seconds, "on_twin": ctx.dry_is_twin,
            "standins": dry.standins}
    detail = f"{dry.module} module tree built on {on} in {dry.seconds:.1f} s: {len(dry.expected)} graph weights"
    if dry.standins:
        used = ", ".join(f"{attr} <- {src}" for attr, src in dry.standins.items())
        return WARN, (f"{detail}, but only with config stand-ins ({used}): the port's config code reads keys this "
                      "checkpoint does not have; rewire config.py"), data
    return PASS, detail, data


def gate_key_diff(ctx: GateContext) -> Outcome:
    from import_model.port.package import open_delta_markers

    if ctx.dry is None:
        return SKIP, "no dry build to compare with"
    expected, adapted = ctx.dry.expected, ctx.dry.adapted
    open_rules = open_delta_markers(ctx.port_dir)
    missing = [k for k in expected if k not in adapted]
    orphans = [k for k in adapted if k not in expected]
    shapes = [k for k in expected if k in adapted and expected[k] != adapted[k]]
    waiting = renames.pending_delta_keys(orphans, open_rules)
    removed = renames.pending_delta_keys(missing, open_rules, renames.PENDING_GRAPH_WEIGHTS)
    orphans = [k for k in orphans if not any(k in keys for keys in waiting.values())]
    missing = [k for k in missing if not any(k in keys for keys in removed.values())]
    aside = sorted(set(re.findall(re.escape(renames.SET_ASIDE) + r" (\w+)\)", _adapter_text(ctx.port_dir))))
    data = {"missing": missing, "orphans": orphans, "pending": waiting, "pending_removal": removed, "set_aside": aside,
            "shape_mismatches": [{"name": k, "graph": expected[k], "adapter": adapted[k]} for k in shapes]}
    if not (missing or orphans or shapes):
        notes = [f"checkpoint keys wait for open delta rows: {_by_rule(waiting)}" if waiting else "",
                 f"donor graph weights open delta rows remove: {_by_rule(removed)}" if removed else "",
                 f"the weight table sets keys aside for open delta rows: {', '.join(aside)}" if aside else ""]
        notes = [n for n in notes if n]
        if notes:
            return WARN, f"every other name matches ({len(expected)} graph weights); " + "; ".join(notes), data
        return PASS, f"the weight adapter fills all {len(expected)} graph weights, names and shapes match", data
    parts = []
    if orphans:
        parts.append(f"{len(orphans)} orphan(s) ({_patterns(orphans)})")
    if missing:
        parts.append(f"{len(missing)} missing ({_patterns(missing)})")
    if shapes:
        first = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es) (e.g. {first}: graph "
                     f"{renames.shape_text(expected[first])}, adapter {renames.shape_text(adapted[first])})")
    return FAIL, "; ".join(parts) + _renames_hint(ctx), data


def _by_rule(pending: dict[str, list[str]]) -> str:
    return "; ".join(f"{rule} {len(names)} ({_patterns(names)})" for rule, names in pending.items())


def _adapter_text(port_dir: Path) -> str:
    try:
        return read_bounded_text(port_dir / renames.ADAPTER_FILE, MAX_PORT_FILE_BYTES, "weight adapter file",
                                 errors="replace")
    except FileRefused as exc:
        if exc.missing:
            return ""
        raise


def _patterns(names: list[str], limit: int = 3) -> str:
    rows = renames.summarize(names)
    text = ", ".join(f"{p} x{n}" if n > 1 else p for p, n in rows[:limit])
    return text + (f", +{len(rows) - limit} more" if len(rows) > limit else "")


def _renames_hint(ctx: GateContext) -> str:
    """Say whether `import-model renames --write` would close the gap."""
    assert ctx.dry is not None
    try:
        tensors = load_checkpoint(open_source(str(ctx.dry.checkpoint))).tensors
    except UserError:
        return ""
    mapping = renames.derive_mapping({k: t.shape for k, t in tensors.items()}, ctx.dry.expected, ctx.config)
    if mapping.complete:
        return "; `import-model renames --write` derives a complete table"
    return (f"; the derived renames still leave {len(mapping.orphans)} orphan(s) and {len(mapping.missing)} missing: "
            "the graph itself differs (see `import-model renames`)")


def gate_weights_format(ctx: GateContext) -> Outcome:
    ckpt = ctx.checkpoint
    if ckpt is None:
        return FAIL, ctx.checkpoint_error or "no checkpoint headers could be read"
    if ckpt.weight_format == "pickle":
        return FAIL, "only pickle weights (.bin/.pt): never unpickled; convert to safetensors in a sandbox first"
    if ckpt.weight_format != "safetensors":
        return FAIL, f"no safetensors weights (format: {ckpt.weight_format})"
    dtypes = {t.dtype for t in ckpt.tensors.values()}
    floats = sorted(dtypes - NON_FLOAT_DTYPES)
    _default, supported = port_encodings(ctx.port_dir)
    loaders = [e for e in supported if encoding_loads(e, floats)]
    data = {"dtypes": sorted(dtypes), "loading_encodings": loaders}
    note = f"; {len(ckpt.other_weight_files)} pickle file(s) beside them are ignored" if ckpt.other_weight_files else ""
    if supported and not loaders:
        return FAIL, (f"tensors are {', '.join(floats)}; none of the port's encodings ({', '.join(supported)}) "
                      "loads them all"), data
    if not supported:
        return WARN, f"safetensors, {', '.join(floats)}; the port's encodings could not be read{note}", data
    return PASS, f"safetensors, {', '.join(floats) or 'no float'} tensors; loadable as {', '.join(loaders)}{note}", data


# --------------------------------------------------------------------------- verify


def gate_parity(ctx: GateContext) -> Outcome:
    failed = [g.name for g in ctx.results if g.status == FAIL]
    if failed:
        return SKIP, f"fix the FAILs first ({', '.join(failed)}); verify compiles the graph for minutes"
    from import_model.verify.engine import VerifyOptions, run_verify

    folder = ctx.dry.checkpoint if ctx.dry else renames.checkpoint_for_dry_build(
        ctx.source, ctx.config, ctx.checkpoint, ctx.progress)[0]
    try:
        result = run_verify(folder, ctx.port_dir, VerifyOptions(), progress=ctx.progress)
    except UserError as exc:
        return FAIL, exc.message
    verdict = result.verdict.as_dict()
    first = verdict.get("first_divergence")
    if verdict.get("passed"):
        return PASS, f"every tap matches HF (prefill and decode, {len(result.prompts)} prompts)"
    where = f"first divergence at {first['tap']}" if first else "greedy tokens differ"
    return FAIL, f"{where}; run `import-model verify` for the per-layer report"


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class GateSpec:
    phase: str
    name: str
    run: GateFn
    what: str


GATES: tuple[GateSpec, ...] = (
    GateSpec("preflight", "walls", gate_walls, "hard blockers and warnings (check-walls)"),
    GateSpec("preflight", "arch-name", gate_arch_name, "arch.py's name is config.json architectures[0]"),
    GateSpec("preflight", "donor-still-in-place", gate_donor, "the graph is not the unmodified donor"),
    GateSpec("preflight", "encoding", gate_encoding, "default encoding vs the checkpoint dtype"),
    GateSpec("preflight", "checkpoint", gate_checkpoint, "safetensors present, shards and index complete"),
    GateSpec("smoke", "import-smoke", gate_import_smoke, "the port imports in a fresh interpreter"),
    GateSpec("smoke", "graph-dry-build", gate_dry_build, "config + module tree build without compiling"),
    GateSpec("smoke", "adapter-graph-keys", gate_key_diff, "weight adapter output vs graph weight names/shapes"),
    GateSpec("smoke", "weights-format", gate_weights_format, "safetensors, dtypes the encodings load, no pickle"),
    GateSpec("verify", "parity", gate_parity, "HF vs MAX tap by tap (compiles)"),
)


def open_context(model: str, port_dir: Path, revision: str | None = None,
                 progress: Callable[[str], None] = lambda _m: None) -> GateContext:
    if not port_dir.is_dir():
        raise UserError(f"--port-dir {port_dir}: no such directory")
    if not (port_dir / "__init__.py").is_file():
        raise UserError(f"{port_dir} is not a port: it has no __init__.py (pass the <output_dir>/<slug> folder)")
    source = open_source(model, revision)
    config = load_config(source)
    checkpoint, error = None, None
    try:
        checkpoint = load_checkpoint(source, progress=progress)
    except UserError as exc:
        error = exc.message
    return GateContext(model=source.display, port_dir=port_dir, source=source, config=config, checkpoint=checkpoint,
                       checkpoint_error=error, progress=progress)


def run_gates(ctx: GateContext, phase: str = "smoke") -> list[Gate]:
    """Run every gate of the phases ``phase`` selects, in table order."""
    if phase not in PHASE_CHOICES:
        raise UserError(f"--phase {phase}: choose one of {', '.join(PHASE_CHOICES)}")
    phases = PHASE_CHOICES[phase]
    for spec in GATES:
        if spec.phase not in phases:
            continue
        try:
            outcome = spec.run(ctx)
        except UserError as exc:
            outcome = (FAIL, exc.message)
        except Exception as exc:  # noqa: BLE001 - one broken gate must not hide the others
            if os.environ.get("IMPORT_MODEL_DEBUG"):
                raise
            outcome = (FAIL, f"the gate itself crashed: {type(exc).__name__}: {str(exc)[:200]} "
                             "(set IMPORT_MODEL_DEBUG=1 for the traceback and report it)")
        data = outcome[2] if len(outcome) == 3 else {}  # type: ignore[misc]
        ctx.results.append(Gate(spec.phase, spec.name, outcome[0], outcome[1], data))
    return ctx.results


def exit_code(gates: list[Gate]) -> int:
    return 1 if any(g.status == FAIL for g in gates) else 0


# --------------------------------------------------------------------------- checkpoint facts


def dominant_dtype(checkpoint: Checkpoint | None) -> str | None:
    """The float dtype holding most of the checkpoint's bytes."""
    if checkpoint is None:
        return None
    return next((d for d in checkpoint.bytes_by_dtype() if d not in NON_FLOAT_DTYPES), None)
