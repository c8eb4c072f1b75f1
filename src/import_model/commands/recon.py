"""Phase 1 commands: inspect, list-archs, list-keys, check-walls (and twin)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from import_model import report
from import_model.arg_types import output_dir
from import_model.errors import UserError
from import_model.recon import config_map, keys, registry
from import_model.recon.native_caveats import native_entries
from import_model.source import Checkpoint, ModelSource, load_checkpoint, load_config, open_source, shown

#: Seeds the twin builder accepts: torch's generators take an unsigned 64-bit seed.
MAX_SEED = 2**64 - 1


def architecture_of(config: dict[str, Any]) -> str | None:
    """``architectures[0]`` when it is a usable class name."""
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str) and archs[0].isidentifier():
        return archs[0]
    return None


def _open(args: argparse.Namespace) -> tuple[ModelSource, dict[str, Any]]:
    source = open_source(args.model, args.revision)
    return source, load_config(source)


# -- inspect ---------------------------------------------------------------------


def inspect_model(source: ModelSource, config: dict[str, Any]) -> dict[str, Any]:
    """Everything `inspect` reports, as plain data."""
    from import_model.recon.card import scan_card

    architecture = architecture_of(config)
    natives = registry.find_native(architecture) if architecture else []
    checkpoint = load_checkpoint(source, progress=report.progress)
    rows = config_map.map_config(config)
    card_text, card_note = source.read_card()
    if card_note:
        report.progress(card_note)
    card = scan_card(card_text) if card_text else None
    return {
        "model": source.display,
        "source": source.kind,
        "architecture": architecture,
        "model_type": config.get("model_type") if isinstance(config.get("model_type"), str) else None,
        "native": _with_weights(native_entries(natives, config), checkpoint),
        "serve_command": registry.serve_command(source.display) if natives else None,
        "config": [row.as_dict() for row in rows],
        "config_summary": config_map.summarize(rows),
        "checkpoint": _checkpoint_summary(checkpoint),
        "memory": keys.memory_estimates(checkpoint.parameter_count, config) if checkpoint.tensors else [],
        "model_card": _card_dict(card) if card else None,
        "model_card_note": card_note,
    }


def _with_weights(natives: list[dict[str, Any]], checkpoint: Checkpoint) -> list[dict[str, Any]]:
    """Each native entry plus the checkpoint tensors that come with its unread switch keys."""
    from import_model.recon.native_reads import UnreadKey, weights_of_unread_keys

    for native in natives:
        keys = [UnreadKey(k["key"], k["value"], k["note"]) for k in native.get("unread_keys", [])]
        native["unread_weights"] = weights_of_unread_keys(keys, checkpoint.tensors)
    return natives


def _card_dict(card: Any) -> dict[str, Any]:
    return {
        "family_claims": [{"family": c.family, "source": c.source, "evidence": c.evidence} for c in card.family_claims],
        "families": list(card.families),
        "base_models": list(card.base_models),
        "tags": list(card.tags),
        "license": card.license,
        "links": [{"kind": link.kind, "url": link.url} for link in card.links],
        "tricks": [{"tag": tag, "sentence": sentence} for tag, sentences in card.tricks.items() for sentence in sentences],
        "truncated": card.truncated,
    }


def _checkpoint_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "weight_format": checkpoint.weight_format,
        "shards": checkpoint.shards,
        "tensors": len(checkpoint.tensors),
        "parameters": checkpoint.parameter_count,
        "bytes": checkpoint.total_bytes,
        "bytes_by_dtype": checkpoint.bytes_by_dtype(),
        "params_by_dtype": checkpoint.params_by_dtype(),
        "other_weight_files": checkpoint.other_weight_files,
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    source, config = _open(args)
    result = inspect_model(source, config)
    if args.json:
        report.emit_json(result)
    else:
        _print_inspect(result)
    return 0


def print_native(architecture: str | None, natives: list[dict[str, Any]], serve_command: str | None,
                 model: str) -> None:
    """The native registration, what the static reading of MAX's code found, and the command that proves it."""
    slugs = ", ".join(n["slug"] for n in natives)
    unread = {k["key"]: k for native in natives for k in native.get("unread_keys", [])}
    check = f"import-model check-native {model}"
    if unread:
        keys = "; ".join(f"{k['key']} = {json.dumps(k['value'])} ({k['note']})" for k in unread.values())
        report.line(f"MAX registers {architecture} natively (slug {slugs}), but its code never reads: {keys}.",
                    style="yellow")
        weights = sorted({w for native in natives for w in native.get("unread_weights", [])})
        if weights:
            report.line(f"The checkpoint holds {len(weights)} weight(s) that come with them and that MAX's graph "
                        f"has no place for ({', '.join(weights[:3])}{', ...' if len(weights) > 3 else ''}).",
                        style="yellow")
        report.line(f"Native but unverified, and likely to diverge: `{check}` decides (exit 1: port it).")
    else:
        report.line(f"MAX registers {architecture} natively (slug {slugs}); its code reads every config key that "
                    "changes this model.")
        report.line(f"Native but unverified: `{check}` proves parity on a twin (exit 0: no port needed).")
    report.line(f"  serve it with:  {serve_command}")
    for text in sorted({t for native in natives for t in native.get("caveats", [])}):
        report.line(f"  known difference on this config (check-native measures it): {text}", style="yellow")


def _print_inspect(result: dict[str, Any]) -> None:
    report.heading(f"{result['model']}  ({result['source']})")
    report.line(f"architecture: {result['architecture'] or '(none declared)'}    model_type: {result['model_type'] or '-'}")
    if result["native"]:
        print_native(result["architecture"], result["native"], result["serve_command"], result["model"])
    else:
        report.line(f"MAX does not register {result['architecture']}: a port is needed (next: check-walls, then plan).")
    ckpt = result["checkpoint"]
    report.heading("Checkpoint")
    if ckpt["weight_format"] == "safetensors":
        report.line(
            f"{ckpt['tensors']} tensors in {len(ckpt['shards'])} safetensors file(s); "
            f"{keys.human_count(ckpt['parameters'])} parameters, {keys.human_bytes(ckpt['bytes'])}"
        )
        report.table(None, ["dtype", "parameters", "bytes"], [
            (dtype, keys.human_count(ckpt["params_by_dtype"][dtype]), keys.human_bytes(size))
            for dtype, size in ckpt["bytes_by_dtype"].items()
        ])
    else:
        report.line(f"no safetensors weights (format: {ckpt['weight_format']}; files: {ckpt['other_weight_files'] or 'none'})")
    if result["memory"]:
        report.table("Estimated memory at each MAX encoding", ["encoding", "weights", "KV cache, 8k tokens", "fits one 80 GB GPU"], [
            (m["encoding"], keys.human_bytes(m["weight_bytes"]), keys.human_bytes(m["kv_cache_bytes_8k_tokens"]),
             "yes" if m["fits_one_80gb_gpu"] else "no") for m in result["memory"]
        ])
    counts = result["config_summary"]
    report.table(
        "Config keys -> MAX  (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")",
        ["key", "value", "where it goes", "MAX field", "note"],
        [(r["key"], r["value"], _ROLE_TEXT[r["role"]], r["max_field"], r["note"]) for r in result["config"]],
    )
    _print_card(result["model_card"], result["model_card_note"])


_ROLE_TEXT = {
    config_map.WIRED: "wired by donor config",
    config_map.GRAPH: "NEEDS GRAPH CODE",
    config_map.SERVING: "tokenizer / serving",
    config_map.IGNORED: "irrelevant to inference",
    config_map.UNKNOWN: "unknown: read modeling code",
}


def _print_card(card: dict[str, Any] | None, note: str | None = None) -> None:
    report.heading("Model card")
    if note:
        report.line(note)
        return
    if not card:
        report.line("no README.md in the repo: read the paper or blog post by hand.")
        return
    report.line(f"family claims: {', '.join(card['families']) or 'none found'}"
                + (f"  (base model: {', '.join(card['base_models'])})" if card["base_models"] else ""))
    for link in card["links"]:
        report.line(f"  {link['kind']}: {link['url']}")
    tricks = card["tricks"]
    if not tricks:
        report.line("no sentences announcing architecture tricks were found.")
    for trick in tricks:
        report.line(f"  [{trick['tag']}] {trick['sentence']}")


# -- list-archs --------------------------------------------------------------------


def cmd_list_archs(args: argparse.Namespace) -> int:
    """Every registration of the installed MAX, marked by task; ``--donors`` keeps the ones a port starts from."""
    archs = registry.native_architectures()
    if args.donors:
        archs = [a for a in archs if a.is_donor]
    if args.match:
        archs = [a for a in archs if a.name == args.match]
    rows = [
        {"architecture": a.name, "slug": a.slug, "task": a.task, "task_label": a.task_label, "inputs": a.inputs,
         "default_encoding": a.default_encoding, "encodings": a.supported_encodings, "donor": a.is_donor}
        for a in archs
    ]
    if args.json:
        report.emit_json({"max_architectures_dir": str(registry.architectures_dir()), "architectures": rows})
    elif rows:
        report.table(f"MAX registrations ({len(rows)}: {_task_counts(archs)})",
                     ["HF class", "MAX slug", "task", "default encoding", "donor"], [
            (r["architecture"], r["slug"], r["task_label"], r["default_encoding"], "yes" if r["donor"] else "")
            for r in rows
        ])
    elif args.match:
        report.line(f"{args.match} is not registered by the installed MAX: a port is needed.")
    if args.match:
        return 0 if rows else 1
    return 0


def _task_counts(archs: list[registry.NativeArch]) -> str:
    """``95 text generation (21 multimodal), 5 embeddings, ...`` in MAX's task order."""
    parts = []
    for task in [*registry.TASK_WORDS, *sorted({a.task for a in archs} - set(registry.TASK_WORDS))]:
        group = [a for a in archs if a.task == task]
        if not group:
            continue
        multimodal = sum(1 for a in group if a.inputs != ["TEXT"])
        words = registry.TASK_WORDS.get(task, task.lower().replace("_", " "))
        parts.append(f"{len(group)} {words}" + (f" ({multimodal} multimodal)" if multimodal else ""))
    return ", ".join(parts)


# -- list-keys ---------------------------------------------------------------------


def cmd_list_keys(args: argparse.Namespace) -> int:
    source = open_source(args.model, args.revision)
    checkpoint = load_checkpoint(source, progress=report.progress)
    if checkpoint.weight_format != "safetensors":
        raise UserError(_no_safetensors_message(source, checkpoint))
    tensors = keys.select_keys(checkpoint, args.prefix)
    if args.prefix and not tensors:
        raise UserError(f"no key starts with {' or '.join(args.prefix)}; run without --prefix to see the names", exit_code=1)
    totals = {"tensors": len(tensors), "parameters": sum(t.numel for t in tensors), "bytes": sum(t.nbytes for t in tensors)}
    if args.summary:
        patterns = keys.summarize_keys(tensors)
        if args.json:
            report.emit_json({"model": source.display, "patterns": [p.as_dict() for p in patterns], "totals": totals})
            return 0
        report.table(f"{source.display}: {len(patterns)} key patterns", ["pattern", "count", "shape", "dtype", "parameters"], [
            (p.pattern, f"x{p.count}", p.shape_text, ",".join(p.dtypes), keys.human_count(p.params)) for p in patterns
        ])
    else:
        if args.json:
            report.emit_json({"model": source.display, "tensors": [
                {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "shard": t.shard} for t in tensors
            ], "totals": totals})
            return 0
        report.table(f"{source.display}: {len(tensors)} tensors", ["key", "shape", "dtype", "shard"], [
            (t.name, "x".join(map(str, t.shape)) or "scalar", t.dtype, t.shard) for t in tensors
        ])
    report.line(f"total: {totals['tensors']} tensors, {keys.human_count(totals['parameters'])} parameters, "
                f"{keys.human_bytes(totals['bytes'])}")
    return 0


def _no_safetensors_message(source: ModelSource, checkpoint: Checkpoint) -> str:
    if checkpoint.weight_format == "pickle":
        return (f"{source.display} ships only pickle weights ({', '.join(checkpoint.other_weight_files[:3])}); "
                "import-model never unpickles files from a repo: convert them to safetensors in a sandbox first")
    if checkpoint.weight_format == "gguf":
        return f"{source.display} ships only GGUF files; export a safetensors checkpoint (transformers can load GGUF)"
    return f"{source.display} has no weight files (no *.safetensors); is this the right repo or revision?"


# -- check-walls -------------------------------------------------------------------


def cmd_check_walls(args: argparse.Namespace) -> int:
    from import_model.recon import walls

    source, config = _open(args)
    checkpoint = load_checkpoint(source, progress=report.progress)
    findings = walls.scan_walls(config, checkpoint, source.files())
    code = walls.exit_code(findings)
    verdict = {0: "clear", 1: "warnings", 2: "blocked"}[code]
    if args.json:
        report.emit_json({"model": source.display, "verdict": verdict, "exit_code": code,
                          "findings": [_finding_dict(f) for f in findings]})
        return code
    report.heading(f"{source.display}: walls {verdict.upper()} (exit {code})")
    if findings:
        report.table(None, ["level", "code", "reason", "read next"], [
            (f.level, f.code, f.reason, f.read_next) for f in findings
        ])
    else:
        report.line("no walls found: continue with `import-model plan`.")
    return code


def _finding_dict(finding: Any) -> dict[str, Any]:
    row = {"level": finding.level, "code": finding.code, "reason": finding.reason, "read_next": finding.read_next}
    if finding.trait:  # a rule that asked the installed MAX: the trait, and the block it ships for it (if any)
        row["max_block"] = {"trait": finding.trait, "block": finding.block or None, "donor": finding.donor or None,
                            "cpu": finding.cpu or None}
    return row


# -- twin ---------------------------------------------------------------------------


def cmd_twin(args: argparse.Namespace) -> int:
    from import_model.verify.twin import make_twin

    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed {shown(str(args.seed))}: choose a whole number from 0 to 2**64-1")
    if args.layers is not None and not 1 <= args.layers <= 64:
        raise UserError(f"--layers {args.layers}: choose between 1 and 64")
    output = output_dir(args.output, "--output")
    _source, config = _open(args)
    try:
        info = make_twin(config, output, seed=args.seed, num_layers=args.layers, force=args.force,
                         progress=report.progress, source=getattr(_source, "root", None))
    except OSError as exc:  # the output's file system refused a write (a read-only or virtual one, a full disk)
        raise UserError(f"--output {shown(args.output)}: cannot write the twin there "
                        f"({exc.strerror or type(exc).__name__}); choose another directory") from None
    payload = {
        "path": str(info.path), "architecture": info.architecture, "model_type": info.model_type,
        "num_layers": info.num_layers, "parameters": info.num_parameters, "shrunk": info.shrunk,
    }
    if args.json:
        report.emit_json(payload)
    else:
        report.line(f"twin of {info.architecture} written to {info.path}: {info.num_layers} layers, "
                    f"{keys.human_count(info.num_parameters)} parameters (seed {args.seed})")
    return 0
