"""The port writer: one request, one of four modes, one package written.

``import-model port`` writes the template package (``port/template/``)
specialised for one model, in one of two modes chosen from its traits:

- **donor**: every difference from MAX's llama3 is a switch its own config
  class already has (interleaved rotary, for one), so the port reuses MAX's
  ``Llama3`` graph and pipeline model and sets that switch in a small named
  override; the fused kernels and the donor's speed stay.
- **catalog**: the decoder is written out from ``template/decoder.py``, every
  ``if TRAITS...`` decided for this model, so ``<slug>.py`` holds only the
  pieces the model uses; the rest of the pipeline is the donor's.

Missing deltas (what neither covers) are named in the graph module's docstring
and as ``TODO(delta ...)`` comments; the stand-in the catalog chose keeps the
port buildable so verify can show where it diverges.

``import-model scaffold`` starts from any MAX donor instead, and leaves the
deltas to the user (``port/donor_code.py``):

- **subclass**: the donor's classes subclassed, one ``TODO(delta ...)`` per delta;
- **full-copy**: the donor's code copied and renamed, the same TODOs.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from import_model.errors import UserError
from import_model.plan.donors import Delta
from import_model.plan.traits import Traits
from import_model.port.catalog import BY_RULE, PIECES
from import_model.port.donor_code import DonorCode, donor_code_files
from import_model.port.package import (
    ROLE_FILES,
    PortNames,
    check_files,
    defined_names,
    open_delta_rules,
    write_package,
)
from import_model.port.specialise import literal_assignment, specialise
from import_model.recon.registry import NativeArch
from import_model.safe_io import MAX_PORT_FILE_BYTES, read_bounded_text
from import_model.source.config_keys import CONFIG_ALIASES, rows_for

Mode = Literal["donor", "catalog", "subclass", "full-copy"]

#: Plan deltas MAX's own llama3 graph covers, each by a switch of its config (applied in ``model.py``).
#: rotary_style: Helium, ERNIE 4.5 (interleaved pairs); tied_head: the donor reads tie_word_embeddings itself.
DONOR_RULES = frozenset({"rotary_style", "tied_head"})

#: The trait values MAX's Llama3 graph has a switch for: field -> value (the switch is set in ``model.py``).
DONOR_SWITCHES: dict[str, Any] = {"rotary_style": "interleaved"}

#: Names the donor reads from the HF config, each answered from the family's own keys when config.json lacks it.
DONOR_NAMES = ("num_key_value_heads", "rms_norm_eps", "intermediate_size", "rope_theta")
#: The context a port declares for a model whose config bounds none.
UNBOUNDED_CONTEXT = 4096


@dataclass(frozen=True)
class ConfigView:
    """What a family's ``config.json`` lacks of the names the donor's config class reads."""

    multi_query: bool = False  # falcon and gpt_bigcode flag a single KV head
    intermediate_default: bool = False  # no intermediate size anywhere: 4 x hidden
    donor_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    donor_defaults: tuple[tuple[str, Any], ...] = ()
    rope_per_layer_type: bool = False  # rope parameters keyed by layer type (Gemma 3/4 text, ModernBERT decoder)

    @property
    def needed(self) -> bool:
        return bool(self.multi_query or self.intermediate_default or self.donor_keys or self.donor_defaults
                    or self.rope_per_layer_type)


def config_view(config: dict[str, Any]) -> ConfigView:
    """The view this config needs: for each donor name its config.json lacks, the family's aliases and a default.

    Rows keep every alias: a config class may answer one through its ``attribute_map`` (CodeGen's ``n_head``)
    while config.json holds another name, so only the HF config object at build time knows which is set.
    """
    params = config.get("rope_parameters") if isinstance(config.get("rope_parameters"), dict) else {}
    per_type = isinstance(params.get("full_attention"), dict)
    params = params["full_attention"] if per_type else params
    present = {k for k, v in {**params, **config}.items() if v is not None}  # transformers 5 nests rope_theta
    missing = [name for name in DONOR_NAMES if name not in present]
    keys = tuple((name, tuple(k for k in CONFIG_ALIASES.get(name, ()) if k != name)) for name in missing
                 if len(CONFIG_ALIASES.get(name, ())) > 1)
    defaults = (("rope_theta", 10000.0),) if "rope_theta" in missing else ()  # GPT-J fixes its base in code
    if not present & set(CONFIG_ALIASES["max_positions"]):
        # no position table (CPM-Ant's relative bias): the donor still sizes the context from this name
        defaults += (("max_position_embeddings", UNBOUNDED_CONTEXT),)
    return ConfigView("multi_query" in config, "intermediate_size" in missing, keys, defaults, per_type)


def _head_dim_is_derived(config: dict[str, Any]) -> bool:
    """MAX's Llama3 graph sizes its rotary table as hidden_size / heads, whatever head_dim says (ERNIE 4.5's twin)."""
    head_dim, hidden, heads = config.get("head_dim"), config.get("hidden_size"), config.get("num_attention_heads")
    if not head_dim:
        return True
    return isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and head_dim == hidden // heads


def mode_for(traits: Traits, config: dict[str, Any], rules: tuple[str, ...], missing: bool) -> Mode:
    """``donor`` when every delta of the plan is a switch of MAX's own llama3 graph, else ``catalog``."""
    if missing or config_view(config).needed or not set(rules) <= DONOR_RULES or not _head_dim_is_derived(config):
        return "catalog"
    differences = traits.differences()
    return "donor" if all(DONOR_SWITCHES.get(k) == v for k, v in differences.items()) else "catalog"


@dataclass(frozen=True)
class Registration:
    """What ``arch.py`` registers: the HF class name and the hub repositories the port is known to serve."""

    architecture: str = "PortForCausalLM"
    example_repo_ids: list[str] = field(default_factory=list)


#: Prefix of the port's own test file (pytest collects ``test_*.py``).
TEST_PREFIX = "test_"

#: Words of the test file's first line that say import-model wrote it (so a rerun may replace it).
TEST_SIGNATURE = "as ``import-model port`` proved it"


@dataclass(frozen=True)
class PortCheck:
    """What the port's own test file needs: the package beside it and the model it was written for."""

    slug: str = "port"
    model: str = "."


@dataclass(frozen=True)
class Scaffold:
    """A TODO-only port started from a MAX donor the user chose: its classes subclassed, or its code copied."""

    donor: NativeArch
    deltas: tuple[Delta, ...]
    full_copy: bool = False


@dataclass(frozen=True)
class PortRequest:
    """Everything the writer needs: names, traits, what is missing, and the config the port will read."""

    names: PortNames
    config: dict[str, Any]
    traits: Traits = Traits()
    example_repo_ids: tuple[str, ...] = ()
    missing: tuple[tuple[str, str], ...] = ()  # (rule, reason)
    rules: tuple[str, ...] = ()  # the plan's delta rules
    deltas: tuple[tuple[str, str, str], ...] = ()  # (rule, what HF does, what the donor does), from the plan
    model_source: str = ""  # what the port's own test makes its twin from
    scaffold: Scaffold | None = None  # set by ``import-model scaffold``
    stand_ins: tuple[tuple[str, str], ...] = ()  # (graph weight pattern, why): weights no checkpoint tensor fills

    @property
    def mode(self) -> Mode:
        if self.scaffold is not None:
            return "full-copy" if self.scaffold.full_copy else "subclass"
        return mode_for(self.traits, self.config, self.rules, bool(self.missing))


@dataclass(frozen=True)
class WrittenPort:
    """What the writer wrote: the package, its files in role order, and (scaffold modes) what it took from the donor."""

    port_dir: Path
    mode: Mode
    files: tuple[str, ...]
    todos: dict[str, list[str]]  # file -> open ``TODO(delta ...)`` rules
    donor: str = "llama3"
    rehomed: tuple[str, ...] = ()
    borrowed: tuple[str, ...] = ()
    generated: tuple[str, ...] = ()


def _template(name: str) -> str:
    return resources.files("import_model.port.template").joinpath(name).read_text()


def _class_renames(names: PortNames) -> dict[str, str]:
    camel = names.camel
    return {"PortDecoder": names.graph, "PortConfig": names.config, "PortModel": names.model,
            "PortAttention": f"{camel}Attention", "PortMLP": f"{camel}MLP", "PortBlock": f"{camel}Block",
            "PortHead": f"{camel}Head", "PortRouter": f"{camel}Router", "PortMoE": f"{camel}MoE",
            "port_arch": names.symbol}


def _named(text: str, names: PortNames) -> str:
    """A specialised template with its classes named for the family and its graph module for the slug."""
    for old, new in _class_renames(names).items():
        text = re.sub(rf"\b{old}\b", new, text)
    return _sorted_relative_imports(text.replace("from .decoder import", f"from .{names.slug} import"))


def _sorted_relative_imports(text: str) -> str:
    """Re-sort the one-line relative imports once the graph module has its slug's name."""
    lines = text.splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.startswith("from .") and not line.rstrip().endswith("(")]
    if rows and rows == list(range(rows[0], rows[0] + len(rows))):
        lines[rows[0]:rows[-1] + 1] = sorted(lines[rows[0]:rows[-1] + 1])
    return "".join(lines)


def _imported_from(text: str, module: str) -> set[str]:
    """Names ``text`` imports from the port's own ``module``."""
    return {alias.name for node in ast.parse(text).body if isinstance(node, ast.ImportFrom) and node.level == 1
            and node.module == module for alias in node.names}


def _wrapped(doc: str) -> str:
    """Docstring lines wrapped at 110 columns (list items keep a hanging indent)."""
    out = []
    for line in doc.splitlines():
        indent = "  " if line.startswith("- ") else ""
        out.append(textwrap.fill(line, 110, subsequent_indent=indent, break_on_hyphens=False) if line else "")
    return "\n".join(out)


def _with_docstring(text: str, doc: str) -> str:
    doc = _wrapped(doc)
    tree = ast.parse(text)
    first = tree.body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)):
        return f'"""{doc}\n"""\n\n{text}'
    lines = text.splitlines(keepends=True)
    body = "".join(lines[first.end_lineno or 1:])
    closing = "\n" if "\n" in doc else ""
    return f'"""{doc}{closing}"""\n{body}'


# --------------------------------------------------------------------------- docstrings


def _deltas_lines(request: PortRequest, defined: dict[str, str]) -> list[str]:
    """One line per plan delta, naming the pieces of this port (``defined``: name -> file) that implement it."""
    if not request.deltas:
        return ["It computes what the llama3 donor computes; only the class name differs."]
    lines = ["Where it differs from the llama3 donor:"]
    for rule, hf, donor in request.deltas:
        where = ", ".join(f"``{name}``" for name in piece_names(request, rule) if name in defined)
        lines.append(f"- {rule}: {hf} (donor: {donor})" + (f"; see {where}" if where else ""))
    return lines


def piece_names(request: PortRequest, rule: str) -> list[str]:
    """The port's names for the template pieces that implement ``rule`` (callers keep those the port defines)."""
    entry = BY_RULE.get(rule)
    if entry is None or rule in {r for r, _ in request.missing}:
        return []
    names = PIECES.get(entry.id, ())
    renames = _class_renames(request.names)
    return [re.sub(r"\bPort\w+", lambda m: renames.get(m.group(0), m.group(0)), n) for n in names]


def delta_locations(files: dict[str, str], request: PortRequest) -> dict[str, list[str]]:
    """Rule -> ``file: name`` for every piece of it that the written files define."""
    defined = defined_names(files, members=True)
    return {rule: [f"{defined[n]}: {n}" for n in piece_names(request, rule) if n in defined]
            for rule, _hf, _donor in request.deltas}


def _missing_lines(request: PortRequest) -> list[str]:
    if not request.missing:
        return []
    return ["", "NOT implemented (this port does not yet compute what the reference computes):",
            *(f"- {rule}: {reason}" for rule, reason in request.missing)]


def _graph_doc(request: PortRequest, defined: dict[str, str]) -> str:
    names = request.names
    lines = [f"The {names.architecture} decoder for MAX, written by import-model ({date.today().year}).", "",
             *_deltas_lines(request, defined)]
    lines += _missing_lines(request)
    return "\n".join(lines)


# --------------------------------------------------------------------------- files


def port_files(request: PortRequest) -> dict[str, str]:
    """The port's files: the templates specialised for this model, in the request's mode, each with its docstring."""
    names, traits, mode = request.names, request.traits, request.mode
    view = config_view(request.config)
    statics = {"TRAITS": traits, "VIEW": view, "MODE": mode, "PARTIAL_WEIGHTS": bool(request.stand_ins)}
    model = specialise(_template("model.py"), statics, keep={"PortModel"},
                       data={"STAND_INS": literal_assignment("STAND_INS", "dict[str, str]", dict(request.stand_ins))})
    config = specialise(_template("model_config.py"), statics, keep={"PortConfig"} | _imported_from(model, "model_config"),
                        data=_view_data(view))
    texts = {
        "__init__.py": specialise(_template("__init__.py"), statics),
        "arch.py": _arch(request, statics),
        "model_config.py": config,
        "model.py": model,
    }
    if mode == "catalog":
        keep = _imported_from(model, "decoder") | _imported_from(config, "decoder")
        decoder = specialise(_template("decoder.py"), statics, keep=keep)
        texts[names.graph_file] = specialise(decoder, statics, keep=keep,
                                             data={"CONFIG_KEYS": _config_keys_data(decoder)})
    texts = {file: _named(text, names) for file, text in texts.items()}
    defined = defined_names(texts, members=True)
    docs = {"__init__.py": f"{names.architecture} for MAX, written by `import-model port`.",
            "arch.py": f"Registration of the {names.architecture} port.",
            "model_config.py": _config_doc(request, view), "model.py": _model_doc(request, defined),
            names.graph_file: _graph_doc(request, defined)}
    files = {file: _with_docstring(text, docs[file]) for file, text in texts.items()}
    files["weight_adapters.py"] = _template("weight_adapters.py")
    todos = "".join(f"# TODO(delta {rule}): {reason}\n" for rule, reason in request.missing)
    if todos and names.graph_file in files:
        files[names.graph_file] = _insert_after_imports(files[names.graph_file], todos)
    return files


def _config_doc(request: PortRequest, view: ConfigView) -> str:
    head = f"Config of the {request.names.architecture} port: the llama3 donor's config class"
    if request.mode == "donor":
        return head + " (MAX's own Llama3 graph reads it); the family's switches are set in model.py."
    return head + (", answering the donor's names from this family's own config keys." if view.needed else ".")


def _model_doc(request: PortRequest, defined: dict[str, str]) -> str:
    names = request.names
    if request.mode == "donor":
        return "\n".join([f"Pipeline model of the {names.architecture} port: the llama3 donor's pipeline and graph,",
                          "with this family's switches set.",
                          "", *_deltas_lines(request, defined), "",
                          f"Each is a switch MAX's Llama3 graph already has, set in ``{names.model}._create_model_config``,",
                          "so the donor's fused kernels stay in play."])
    return (f"Pipeline model of the {names.architecture} port: the llama3 donor's inputs, KV cache, batching and "
            f"execution,\nwith the port's config and decoder ({names.graph_file}).")


def _arch(request: PortRequest, statics: dict[str, Any]) -> str:
    names = request.names
    registration = Registration(names.architecture, list(request.example_repo_ids))
    return specialise(_template("arch.py"), {**statics, "REGISTRATION": registration}, keep={"port_arch"})


def _config_keys_data(decoder: str) -> str:
    """The alias rows the specialised decoder reads (``config_value(config, "name")``)."""
    used = {node.args[1].value for node in ast.walk(ast.parse(decoder))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "config_value"
            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)}
    return literal_assignment("CONFIG_KEYS", "dict[str, tuple[str, ...]]", rows_for(used))


def _view_data(view: ConfigView) -> dict[str, str]:
    return {"DONOR_KEYS": literal_assignment("DONOR_KEYS", "dict[str, tuple[str, ...]]", dict(view.donor_keys)),
            "DONOR_DEFAULTS": literal_assignment("DONOR_DEFAULTS", "dict[str, Any]", dict(view.donor_defaults))}


def _insert_after_imports(text: str, block: str) -> str:
    tree = ast.parse(text)
    last = max((n.end_lineno or 0) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    lines = text.splitlines(keepends=True)
    return "".join(lines[:last]) + "\n" + block + "".join(lines[last:])


def port_test_file(request: PortRequest) -> tuple[str, str]:
    """``test_<slug>.py``, written beside the package: the port's twin parity as a pytest module."""
    names = request.names
    check = PortCheck(names.slug, request.model_source)
    template = _template("port_test.py")
    tests = {n.name for n in ast.parse(template).body if isinstance(n, ast.FunctionDef)}  # pytest calls them all
    text = specialise(template, {"CHECK": check}, keep=tests)
    doc = (f"Twin parity of the {names.architecture} port (``{names.slug}/``), as ``import-model port`` proved it.\n\n"
           f"Run ``pytest {TEST_PREFIX}{names.slug}.py``. " + _first_paragraph_after_title(template))
    if request.missing:
        doc += ("\n\nThe port is partial (missing: " + ", ".join(rule for rule, _ in request.missing)
                + "), so these tests fail until its TODO(delta ...) rows are written.")
    return f"{TEST_PREFIX}{names.slug}.py", _with_docstring(text, doc)


def check_test_file(path: Path) -> None:
    """Refuse to replace a ``test_<slug>.py`` that import-model did not write (a user's own tests)."""
    if not (path.exists() or path.is_symlink()):
        return
    try:
        head = read_bounded_text(path, MAX_PORT_FILE_BYTES, "port test file")[:400]
    except (OSError, UserError):
        head = ""
    if path.is_symlink() or TEST_SIGNATURE not in " ".join(head.split()):  # a long class name wraps the line
        raise UserError(f"{path} exists and was not written by `import-model port`; move it or choose another "
                        "--output-dir")


def _first_paragraph_after_title(text: str) -> str:
    doc = ast.get_docstring(ast.parse(text)) or ""
    return doc.split("\n\n", 1)[1] if "\n\n" in doc else ""


def write_port(out_dir: Path, request: PortRequest) -> WrittenPort:
    """Write ``out_dir/<slug>`` atomically in the request's mode (the caller has checked it may be replaced)."""
    names, scaffold = request.names, request.scaffold
    if scaffold is None:
        files, donor = port_files(request), DonorCode({}, "llama3")
    else:
        example = request.example_repo_ids[0] if request.example_repo_ids else None
        donor = donor_code_files(names, scaffold.donor, list(scaffold.deltas), example, scaffold.full_copy, out_dir)
        files = donor.files
    check_files(files)
    port_dir = write_package(out_dir, names.slug, files)
    order = [*ROLE_FILES.values(), names.graph_file]
    ordered = [name for name in order if name in files] + sorted(set(files) - set(order))
    todos = {name: rules for name, text in files.items() if (rules := open_delta_rules(text))}
    return WrittenPort(port_dir, request.mode, tuple(ordered), todos, donor.donor, donor.rehomed, donor.borrowed,
                       donor.generated)
