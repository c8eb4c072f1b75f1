"""``import-model port MODEL``: every phase in one run, from config to a verified port.

inspect -> native check (MAX registers the class: check-native; verified: the serve command, exit 0; cannot
run: exit 2; diverges: go on and port it under the same class) -> walls (a
blocker, or a token mixer the catalog does not write even where MAX ships a
block for it: exit 2) -> plan -> the plan review (on a terminal, the default
plan and the delta list wait for a yes; a no stops with exit 2 and nothing
written) -> write the catalog port -> weight table -> smoke gates -> verify on
the twin (or the real weights) -> PORT.md -> the serve command.

A trait the catalog does not implement still gets a written port with the row
marked ``TODO(delta ...)``, and weights the names leave unmatched are set aside
or stood in (the ``unfilled_weights`` row); verify runs anyway to show where it
diverges, and the exit code is 1: an honest partial port, never a silent one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from import_model import report
from import_model.arg_types import nonblank
from import_model.cache import atomic_write
from import_model.errors import UserError

#: The catalog ports on MAX's Llama3 pipeline plumbing; the plan still ranks every donor.
CATALOG_BASE = "llama3"


def add_port_run_parser(sub: Any, command: Any) -> None:
    p = command(sub, "port", "all phases: plan, write the port from the delta catalog, renames, gates, verify "
                             "(0 verified, 1 partial or diverging, 2 refused)")
    p.add_argument("model", metavar="MODEL", help="hub ID (org/name) or local checkpoint directory")
    p.add_argument("--revision", type=nonblank, default=None, help="hub branch, tag or commit (hub models only)")
    p.add_argument("--output-dir", type=nonblank, default="ports", metavar="DIR",
                   help="the port goes to DIR/<slug>, PORT.md and reports to DIR (default: ./ports)")
    p.add_argument("--slug", type=nonblank, default=None, help="package name of the port (default: from model_type)")
    p.add_argument("--weights", choices=["twin", "full"], default="twin",
                   help="verify on a tiny twin (default) or on MODEL's real weights (local directory)")
    p.add_argument("--force", action="store_true", help="replace an existing port (PORT.md notes are kept)")
    p.add_argument("--no-verify", action="store_true", help="stop after the gates (no compile)")
    p.add_argument("--yes", "-y", action="store_true",
                   help="go past the plan without asking (it was reviewed already, e.g. with plan --markdown); "
                        "without it a terminal is shown the plan and asked for a yes")
    p.add_argument("--json", action="store_true", help="print the run as JSON")


@dataclass
class PortRun:
    """What one ``port`` run did, step by step."""

    model: str
    architecture: str | None = None
    port_dir: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    deltas: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    mode: str | None = None
    verify: dict[str, Any] | None = None
    #: check-native's answer when MAX registers the class (None otherwise).
    native_check: dict[str, Any] | None = None
    serve_command: str | None = None
    exit_code: int = 0
    seconds: float = 0.0

    def step(self, name: str, status: str, detail: str) -> None:
        self.steps.append({"step": name, "status": status, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def cmd_port(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    run = PortRun(args.model)
    try:
        code = port_steps(args, run, review=lambda plan, record: review_plan(plan, record, assume_yes=args.yes))
    finally:
        run.seconds = round(time.perf_counter() - start, 1)
    run.exit_code = code
    if args.json:
        report.emit_json(run.as_dict())
    else:
        _print(run)
    return code


@dataclass
class Target:
    """What a port is of and where it goes: the checks ``port`` and ``scaffold`` make before any work."""

    out_dir: Path
    source: Any
    config: dict[str, Any]
    architecture: str
    natives: list[Any]


def open_target(model: str, revision: str | None, output_dir: str, *, announce: bool = False) -> Target:
    """Refuse a bad output root at once, then read the model's config and check MAX's registry."""
    from import_model.plan.planner import architecture_of
    from import_model.recon import registry
    from import_model.safe_io import check_output_root
    from import_model.source import load_config, open_source, user_path

    out_dir = user_path(output_dir, "--output-dir").resolve()
    check_output_root(out_dir, "--output-dir")  # before the model is read: `/` and ~ are refused at once
    if announce:
        report.progress(f"reading {model}")
    source = open_source(model, revision)
    config = load_config(source)
    architecture = architecture_of(config)
    if architecture is None:
        raise UserError(f"{source.display}: config.json declares no usable architectures[0]; cannot name the port")
    return Target(out_dir, source, config, architecture, registry.find_native(architecture))


def claim_package(target: Target, slug: str | None, force: bool) -> str:
    """The package name, once ``DIR/<slug>`` may be (re)written and ``DIR/PORT.md`` is a document import-model may update."""
    from import_model.port import tracking
    from import_model.port.package import check_slug, check_target, default_slug

    name = check_slug(slug or default_slug(target.config), target.out_dir)
    check_target(target.out_dir, name, force, getattr(target.source, "root", None))
    # PORT.md is written last; a link, a device or another port's document there is refused before any work.
    tracking.planned_text(target.out_dir / "PORT.md", f"Port of {target.source.display} to MAX", {})
    return name


#: The plan review: given the plan and the run so far, True to write the port.
Review = Callable[[Any, "PortRun"], bool]


def port_steps(args: argparse.Namespace, run: PortRun, review: Review | None = None) -> int:
    """Every step of one ``port`` run, recorded in ``run``; the exit code (a refusal raises UserError).

    ``review`` is asked once the plan is made and before anything is written; ``None`` (a program calling this
    directly) goes straight on.
    """
    from import_model.plan.planner import make_plan, top
    from import_model.port.catalog import build_spec, entry_rows
    from import_model.port.package import port_names
    from import_model.port.writer import TEST_PREFIX, PortRequest, check_test_file, port_test_file, write_port
    from import_model.recon import registry
    from import_model.source import load_checkpoint

    target = open_target(args.model, args.revision, args.output_dir, announce=True)
    source, config, out_dir = target.source, target.config, target.out_dir
    run.model = source.display
    run.architecture = architecture = target.architecture
    if args.weights == "full" and source.kind != "local":
        raise UserError("--weights full needs the checkpoint on disk: download it (hf download) and pass the folder")
    if target.natives:
        if native_check_step(args, target, run):
            run.serve_command = registry.serve_command(source.display)
            return 0
    else:
        run.step("native check", "done", f"{architecture} is not registered in MAX")
    slug = claim_package(target, args.slug, args.force)
    check_test_file(out_dir / f"{TEST_PREFIX}{slug}.py")
    checkpoint = load_checkpoint(source, progress=report.progress)
    walls_step(source.display, config, checkpoint, source.files(), run)
    report.progress("planning: anatomy, donor ranking, delta list")
    plan = make_plan(source.display, config, checkpoint, donor=CATALOG_BASE)
    best = next(iter(top(plan, 1)), None)  # the ranking is computed whatever donor is forced
    rules = tuple(d.rule for d in plan.deltas)
    assert plan.anatomy is not None
    result = build_spec(plan.anatomy, config, list(rules))
    run.spec = result.spec
    run.missing = [m.as_dict() for m in result.missing]
    run.deltas = entry_rows(result, rules)
    run.step("plan", "done", f"{len(rules)} delta(s) from a Llama block; closest native donor: "
                             f"{best.donor.slug if best else '?'}; catalog covers "
                             f"{sum(r['status'] == 'implemented' for r in run.deltas)}")
    if review is not None and not review(plan, run):
        raise UserError(f"plan vetoed: nothing written to {out_dir}; change it with `import-model plan "
                        f"{args.model} --donor SLUG` or start by hand with `import-model scaffold`")
    request = PortRequest(port_names(architecture, slug), config, result.traits,
                          example_repo_ids=(source.display,) if source.kind == "hub" else (),
                          missing=tuple((m.rule, m.reason) for m in result.missing), rules=rules,
                          deltas=tuple((d.rule, d.hf, d.donor) for d in plan.deltas),
                          model_source=source.display if source.kind == "hub" else str(Path(args.model).resolve()))
    port_dir = write_port(out_dir, request).port_dir
    run.port_dir = str(port_dir)
    run.mode = request.mode
    run.step("write port", "done" if result.complete else "partial",
             f"{port_dir} ({_mode_text(request.mode)}, {len(result.applied)} catalog entries" +
             (f"; missing: {', '.join(m.rule for m in result.missing)})" if result.missing else ")"))
    request = _weight_table(source, config, checkpoint, out_dir, request, run)
    test_name, test_text = port_test_file(request)
    atomic_write(out_dir / test_name, test_text.encode())
    _locate_deltas(port_dir, request, run)  # again: the weight table holds the splits and ties
    _smoke_gates(source.display if source.kind == "hub" else str(Path(args.model).resolve()), port_dir, run,
                 args.revision)
    verified = None
    if not args.no_verify:
        verified = _verify(args, source, config, port_dir, run)
    run.serve_command = (f"max serve --model {source.display} --custom-architectures {port_dir} "
                         f"--devices cpu --quantization-encoding float32")
    _write_tracking(out_dir, plan, config, run, source, args.weights)
    if request.missing:
        return 1
    if any(s["status"] == "FAIL" for s in run.steps):
        return 1
    return 0 if verified in (True, None) else 1


def native_check_step(args: argparse.Namespace, target: Target, run: PortRun) -> bool:
    """``check-native`` on a class MAX registers: True when MAX's own graph is verified (stop at the serve command),
    False when it diverges (port it through the catalog, under the same class); one that cannot run stops (exit 2).
    """
    from import_model.commands.native import run_in_child

    native = target.natives[0]
    report.progress(f"MAX registers {target.architecture} natively (slug {native.slug}): checking that its own graph "
                    "computes what transformers computes on this config (check-native)")
    argv = ["check-native", args.model, "--weights", args.weights, "--json"]
    argv += ["--revision", args.revision] if args.revision else []
    result = run_in_child(argv, target.source.display, native)
    if isinstance(result, int):
        raise UserError(f"check-native stopped on {target.source.display} (exit {result}, its reason is above)")
    run.native_check = result.as_dict()
    if result.verdict == "verified":
        run.step("native check", "verified", f"MAX serves {target.architecture} natively (slug {native.slug}) and its "
                                             f"graph matches transformers (worst rel. L2 {result.worst_rel_l2:.1e}): "
                                             "no port needed")
        return True
    if result.verdict == "cannot_run":
        run.step("native check", "cannot run", result.reason)
        raise UserError(f"MAX registers {target.architecture} natively, but check-native cannot run it on this machine: "
                        f"{result.reason}; no port was written")
    keys = ", ".join(k.key for k in result.unread_keys)
    run.step("native check", "diverges", f"{result.reason}" + (f" (unread config keys: {keys})" if keys and
                                                               "never reads" not in result.reason else "")
             + f"; porting {target.architecture} through the catalog, registered under the same class")
    return False


def review_plan(plan: Any, run: PortRun, *, assume_yes: bool, stdin: IO[str] | None = None) -> bool:
    """The seed's plan-and-veto pause: on a terminal, show the default plan and the delta list and wait for a yes.

    ``--yes``, or a stdin or stderr that is not a terminal (a script, CI, an agent's shell), goes on without
    asking and says so in one line; the plan stays in ``--json`` and PORT.md for a reviewer either way.
    """
    stdin = sys.stdin if stdin is None else stdin
    if assume_yes:
        report.progress("plan accepted with --yes: writing the port")
        run.step("plan review", "accepted", "--yes")
        return True
    if not (_is_terminal(stdin) and _is_terminal(sys.stderr)):
        report.progress("not waiting for a yes (no terminal to ask): going on with the plan; pass --yes to say "
                        "it was reviewed")
        run.step("plan review", "not asked", "no terminal; the plan is in PORT.md")
        return True
    _show_plan(plan, run)
    report.err_console().print("Write the port with this plan? [y/N] ", end="", markup=False, highlight=False)
    answer = stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        run.step("plan review", "accepted", "yes at the prompt")
        return True
    return False


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # a closed or pseudo stream
        return False


def _show_plan(plan: Any, run: PortRun) -> None:
    """The default-plan paragraph and the delta list, on stderr (stdout stays clean for --json)."""
    default = getattr(plan, "default", None)
    lines = [f"Plan for {run.architecture} (the port is written on MAX's {CATALOG_BASE} pipeline):"]
    lines.append(f"  {default.paragraph}" if default is not None else "  (no default plan: no weights were read)")
    lines.append(f"Delta list vs a Llama block ({len(run.deltas)}):")
    lines += [f"  - {r['rule']}: {r['entry'] or 'no catalog entry'} ({r['status']})" for r in run.deltas] or ["  none"]
    lines += [f"  missing {m['rule']}: {m['reason']}" for m in run.missing]
    for text in lines:
        report.err_console().print(report.visible(text), markup=False, highlight=False, soft_wrap=True)


def _locate_deltas(port_dir: Path, request: Any, run: PortRun) -> None:
    from import_model.port.native_copy import read_port_file
    from import_model.port.writer import delta_locations

    files = {path.name: read_port_file(path) for path in sorted(port_dir.glob("*.py")) if path.is_file()}
    where = delta_locations(files, request)
    for row in run.deltas:
        row["where"] = where.get(row["rule"], [])


def _mode_text(mode: str) -> str:
    return "MAX's own Llama3 graph with this family's switches" if mode == "donor" else "decoder written out"


def walls_step(model: str, config: dict, checkpoint: Any, files: list[str], run: PortRun) -> None:
    """A blocker stops the run (exit 2); so does a token mixer the catalog does not write; other warnings are recorded.

    A state-space, convolutional or linear-attention mixer MAX ships a block for is only a warning to
    ``check-walls`` (the block is the way to port it), but the catalog writes softmax-attention decoders only:
    going on would write a Llama-shaped port of a model that is not one. So ``port`` stops with one line naming
    the MAX block and the donor to start from by hand, and records the step as ``by hand``.
    """
    from import_model.port.catalog import SUPPORTED
    from import_model.recon import walls

    findings = walls.scan_walls(config, checkpoint, files)
    code = walls.exit_code(findings)
    if code == 2:
        blockers = "; ".join(f"{f.code}: {f.reason}" for f in findings if f.level == walls.BLOCK)
        run.step("walls", "blocked", blockers)
        raise UserError(f"{model} hits a wall the catalog cannot port: {blockers} (see check-walls)")
    mixers = [f for f in findings if f.code in walls.MIXER_CODES and f.level == walls.WARN]
    if mixers and "hybrid" not in SUPPORTED.get("attention.family", frozenset()):
        first = mixers[0]
        run.step("walls", "by hand", "; ".join(f"{f.code}: {f.reason}" for f in mixers))
        module, _, cls = first.block.rpartition(".")
        raise UserError(
            f"the catalog does not write {walls.MIXER_WORDS.get(first.trait, first.trait)} ({first.code} in "
            f"{model}); build on MAX's {cls} ({module}, in its {first.donor} architecture; kernels on the "
            f"CPU: {first.cpu}) by hand: import-model scaffold {model} --start-from {first.donor} "
            "--output-dir DIR (see check-walls)")
    run.step("walls", "clear" if code == 0 else "warnings", "; ".join(f.code for f in findings) or "no walls")


def write_weight_table(source: Any, config: dict, checkpoint: Any, port_dir: Path, open_rules: list[str]) -> tuple[bool, str]:
    """Derive the checkpoint -> graph name table, write it into the port's adapter; (complete, a summary).

    ``open_rules``: the plan's deltas the port does not implement yet, whose weights may be set aside.
    """
    from import_model.port import renames

    try:
        table = renames.derive_table(source, config, checkpoint, port_dir, open_rules, report.progress)
    except renames.DryBuildError as exc:
        return False, f"not written: {exc.message}"
    renames.write_adapter_table(port_dir, table.mapping)
    return table.mapping.complete, _table_summary(table)


def _table_summary(table: Any) -> str:
    mapping, aside = table.mapping, table.set_aside_text()
    renamed = sum(1 for key, name in mapping.renames.items() if key != name)
    summary = f"{renamed} rename(s), {len(mapping.splits)} split(s)" if mapping.complete else _gaps(mapping)
    return summary + (f" ({aside})" if aside else "")


def _gaps(mapping: Any) -> str:
    """``2 orphan(s), 3 missing``: what name matching left open."""
    return ", ".join(f"{len(v)} {k}" for k, v in (("orphan(s)", mapping.orphans), ("missing", mapping.missing),
                                                   ("shape mismatch(es)", mapping.mismatches)) if v)


def _weight_table(source: Any, config: dict, checkpoint: Any, out_dir: Path, request: Any, run: PortRun) -> Any:
    """The weight table; where names leave gaps, the port is rewritten with stand-ins and a missing row first (a
    rewrite replaces the package, so the table is written after it). Returns the request the port was written from."""
    from dataclasses import replace

    from import_model.port import renames
    from import_model.port.writer import write_port

    port_dir = Path(run.port_dir or "")
    try:
        table = renames.derive_table(source, config, checkpoint, port_dir, [m["rule"] for m in run.missing],
                                     report.progress)
    except renames.DryBuildError as exc:
        run.step("weight table", "FAIL", f"not written: {exc.message}")
        return request
    summary, complete = _table_summary(table), table.mapping.complete
    if not complete:
        gaps = _gaps(table.mapping)
        stand_ins = renames.stand_in_gaps(table.mapping)
        shown = ", ".join(list(stand_ins)[:3]) + (f" (+{len(stand_ins) - 3})" if len(stand_ins) > 3 else "")
        reason = (f"the weight table leaves {gaps}: unmatched checkpoint tensors are set aside and "
                  f"{len(stand_ins)} graph weight(s) stood in ({shown or 'none'})")
        request = replace(request, stand_ins=tuple(stand_ins.items()),
                          missing=(*request.missing, (renames.UNFILLED, reason)))
        write_port(out_dir, request)
        run.mode = request.mode
        run.missing.append({"trait": "weights", "rule": renames.UNFILLED, "value": len(stand_ins), "reason": reason})
        run.deltas.append({"rule": renames.UNFILLED, "entry": None, "status": "missing", "how": reason})
        summary += f"; the rest set aside or stood in (missing row {renames.UNFILLED})"
    renames.write_adapter_table(port_dir, table.mapping)
    run.step("weight table", "done" if complete else "partial", summary)
    return request


def _smoke_gates(model: str, port_dir: Path, run: PortRun, revision: str | None) -> None:
    from import_model.verify import gates

    report.progress("smoke gates: import, dry build, adapter/graph keys, weights format")
    ctx = gates.open_context(model, port_dir, revision, progress=report.progress)
    results = gates.run_gates(ctx, "smoke")
    failed = [g for g in results if g.status == gates.FAIL]
    run.step("gates", "FAIL" if failed else "done",
             ", ".join(f"{g.name} {g.status}" for g in results))


def _exit_text(returncode: int) -> str:
    """``exit 2``, or the signal that killed the child (a crash inside MAX or the kernel's out-of-memory killer)."""
    import signal

    if returncode >= 0:
        return f"exit {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _relay_stderr(stream: IO[str], said: list[str]) -> None:
    """Pass a child's progress through as it comes, keeping its ``error:`` lines."""
    for line in stream:
        sys.stderr.write(line)
        if line.startswith("error:"):
            said.append(line.strip())


def _verify(args: argparse.Namespace, source: Any, config: dict, port_dir: Path, run: PortRun) -> bool:
    """``import-model verify`` in a child process: MAX's compile and run stay out of this one."""
    import subprocess

    from import_model.procs import child_env
    from import_model.verify.twin import twin_of

    checkpoint = Path(args.model).resolve() if args.weights == "full" else twin_of(source, config, report.progress)
    report.progress(f"verifying on {'the real weights' if args.weights == 'full' else 'the tiny twin'} "
                    "(a cold compile takes minutes)")
    argv = [sys.executable, "-m", "import_model", "verify", str(checkpoint), "--port-dir", str(port_dir),
            "--weights", args.weights, "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    said: list[str] = []  # the child's own one-line reason, quoted in the step if it cannot finish
    relay = threading.Thread(target=_relay_stderr, args=(proc.stderr, said), daemon=True)
    relay.start()
    stdout = proc.stdout.read()  # type: ignore[union-attr]
    proc.wait()
    relay.join()
    report_path = port_dir.parent / f"verify-{port_dir.name}" / "report.md"
    if proc.returncode not in (0, 1) or not stdout.strip().startswith("{"):
        how = _exit_text(proc.returncode) + (f": {said[-1].removeprefix('error:').strip()}" if said else "")
        run.step("verify", "FAIL", f"verify could not run ({how}); report: {report_path}")
        run.verify = {"passed": False, "error": how, "report": str(report_path)}
        return False
    payload = json.loads(stdout)
    first = payload.get("first_divergence")
    # a non-finite error is written as null (strict JSON): the worst there is
    worst = max((math.inf if r["rel_l2"] is None else r["rel_l2"] for r in payload.get("per_tap", [])), default=0.0)
    passed = bool(payload.get("passed"))
    run.verify = {"passed": passed, "first_divergence": first, "worst_rel_l2": worst,
                  "per_tap": payload.get("per_tap", []), "report": str(report_path),
                  "greedy_text": payload.get("greedy_text", []), "notes": payload.get("notes", []),
                  "routing": payload.get("routing", []), "routing_summary": payload.get("routing_summary")}
    detail = f"PASS (worst rel. L2 {worst:.1e})" if passed else \
        f"FAIL: first divergence at {first['tap'] if first else '?'}"
    if payload.get("routing_summary"):
        detail += f"; routing: {payload['routing_summary']}"
    run.step("verify", "PASS" if passed else "FAIL", f"{detail}; report: {report_path}")
    return passed


#: What PORT.md says about which expert path verify ran (verify runs on the CPU).
MOE_PATH_NOTE = ("Experts: verify ran the port's CPU path: every expert evaluated on every token and combined with the "
                 "router's top-k weights (zero for experts a token did not choose). MAX's grouped-matmul MoE kernels, "
                 "which the port selects on a GPU with the same router, did not run here.")


def catalog_section(run: PortRun) -> str:
    """PORT.md's record of the catalog run: each delta, how it is implemented, and the verify verdict."""
    from import_model.port.tracking import md_table

    lines = [f"Written by `import-model port` from the delta catalog: {_mode_text(run.mode or 'catalog')}.", "",
             md_table(["delta", "catalog entry", "status", "how", "where in the port"],
                      [(r["rule"], r["entry"] or "-", r["status"], r["how"],
                        ", ".join(f"`{w}`" for w in r.get("where", [])) or "-") for r in run.deltas])]
    if run.missing:
        lines += ["", "Not implemented (marked `TODO(delta ...)` in the graph module):", ""]
        lines += [f"- `{m['rule']}`: {m['reason']}" for m in run.missing]
    lines += ["", md_table(["step", "status", "detail"], [(s["step"], s["status"], s["detail"]) for s in run.steps])]
    if run.serve_command:
        lines += ["", "Serve it:", "", "```", run.serve_command, "```"]
    return "\n".join(lines)


def _write_tracking(out_dir: Path, plan: Any, config: dict, run: PortRun, source: Any, weights: str) -> None:
    from import_model.port import tracking
    from import_model.port.tracking import plan_sections

    card = source.read_card()[0]
    sections = plan_sections(plan, config, card) | {"scaffold": catalog_section(run)}
    if run.verify is not None:
        if not run.verify.get("passed"):
            tier = "not reached: verify failed"
        elif weights == "full":
            tier = "6 (logit parity) on the real weights"
        else:
            tier = ("6 (logit parity) on the seeded twin only: a twin result ranks below any real-weight tier from 3 "
                    "up; run `import-model verify MODEL --port-dir DIR/<slug> --weights full` or `compare`")
        sections["validation"] = f"Tier {tier}; report: {run.verify.get('report')}"
        if any(str(r["rule"]).startswith("moe") and r["status"] == "implemented" for r in run.deltas):
            sections["validation"] += "\n\n" + MOE_PATH_NOTE
            if run.verify.get("routing_summary"):
                sections["validation"] += f" Routing against HF: {run.verify['routing_summary']}."
    path = out_dir / "PORT.md"
    text = tracking.planned_text(path, f"Port of {source.display} to MAX", sections)
    atomic_write(path, text.encode())


def _print(run: PortRun) -> None:
    report.heading(f"port {run.architecture or run.model}")
    report.table(None, ["step", "status", "detail"], [(s["step"], s["status"], s["detail"]) for s in run.steps])
    if run.deltas:
        report.table("delta list vs a Llama block", ["delta", "catalog entry", "status"],
                     [(r["rule"], r["entry"] or "-", r["status"]) for r in run.deltas])
    for missing in run.missing:
        report.line(f"missing delta {missing['rule']}: {missing['reason']}")
    if run.serve_command:
        report.line(f"serve: {run.serve_command}")
    verdict = {0: "verified", 1: "partial or diverging: see the rows above", 2: "refused"}.get(run.exit_code, "")
    if run.exit_code == 0 and run.port_dir and run.verify is None:
        verdict = "written and gated, not verified (--no-verify)"
    report.line(f"{verdict} ({run.seconds:.0f} s)")
