"""The port writer: templates specialised per model, ruff-clean, standalone, each delta a named piece.

No compile here: the written ports are parsed, linted with the project's ruff
rules and inspected. ``tests/test_port.py`` builds and verifies them in MAX.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from import_model.errors import UserError
from import_model.plan import make_plan
from import_model.plan.traits import Traits
from import_model.port.catalog import build_spec
from import_model.port.package import port_names
from import_model.port.renames import AdapterTable, _without_prefix_strips, render_table_block
from import_model.port.specialise import TemplateError, specialise
from import_model.port.writer import PortRequest, check_test_file, delta_locations, port_files, port_test_file
from import_model.source import load_checkpoint, load_config, open_source
from tests.support.families import family_twin_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
RUFF = str(Path(sys.prefix) / "bin" / "ruff") if (Path(sys.prefix) / "bin" / "ruff").exists() else "ruff"
FAMILIES = ["helium", "arcee", "stablelm", "starcoder2", "gemma", "gemma2", "smollm3", "gpt_neox", "phi", "cohere",
            "glm", "exaone4", "apertus", "diffllama"]


# --------------------------------------------------------------------------- specialise


def _special(source: str, **statics: Any) -> str:
    return specialise(textwrap.dedent(source), statics, keep={"kept"})


class _Choices:
    mode = "b"
    on = True
    off = False


def test_static_if_chain_keeps_the_taken_branch_dedented_with_its_comments() -> None:
    out = _special('''
        def kept(x):
            if C.mode == "a":
                return 1
            elif C.mode == "b":
                # the b branch
                y = x + 1
                return y
            else:
                return 3
        ''', C=_Choices())
    assert "    # the b branch\n    y = x + 1\n    return y\n" in out
    assert "C." not in out and "return 1" not in out and "return 3" not in out


def test_a_branch_that_disappears_leaves_pass_where_python_needs_a_statement() -> None:
    out = _special('''
        def kept(x):
            if C.off:
                return x
        ''', C=_Choices())
    assert "def kept(x):\n    pass\n" in out


def test_static_expressions_and_partial_tests_are_evaluated() -> None:
    out = _special('''
        def kept(x, n):
            flag = C.mode == "b"
            value = 1 if C.on else 2
            kept_test = 3 if C.on and n else 4
            decided = 5 if C.off and n else 6
            if C.on and n > 1:
                return flag, value
            if C.off or n < 0:
                return None
            return x
        ''', C=_Choices())
    assert "flag = True" in out and "value = 1" in out
    assert "kept_test = 3 if n else 4" in out and "decided = 6" in out
    assert "if n > 1:" in out and "if n < 0:" in out


def test_unused_definitions_private_methods_and_imports_are_pruned() -> None:
    out = _special('''
        import math
        import os

        __all__ = ["kept"]
        TABLE = {}


        def _helper():
            return math.pi


        def _unused():
            return os.sep


        class kept:
            def __call__(self):
                if C.on:
                    return _helper()
                else:
                    return self._other()

            def _other(self):
                return TABLE

            @override
            def _hook(self):
                return None
        ''', C=_Choices())
    tree = ast.parse(out)
    names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert names == {"kept", "__call__", "_helper", "_hook"}
    assert "import os" not in out and "import math" in out and "TABLE" not in out and "__all__" in out


def test_data_replaces_a_top_level_assignment_and_an_unknown_name_is_a_template_error() -> None:
    out = specialise("ROWS: dict = {}\n\n\ndef kept():\n    return ROWS\n", {}, keep={"kept"},
                     data={"ROWS": 'ROWS: dict = {"a": 1}'})
    assert 'ROWS: dict = {"a": 1}' in out
    with pytest.raises(TemplateError):
        specialise("X = 1\n", {}, data={"Y": "Y = 2"})
    with pytest.raises(TemplateError):
        specialise("def kept(a):\n    if (C.on and\n            C.off):\n        return a\n", {"C": _Choices()}, keep={"kept"})


# --------------------------------------------------------------------------- the template package


def test_the_template_package_imports_as_the_donor_block() -> None:
    from max.pipelines.architectures.llama3.model import Llama3Model

    import import_model.port.template as package
    from import_model.port.template import decoder, model, model_config

    assert package.ARCHITECTURES[0].name == "PortForCausalLM"
    assert Traits() == decoder.TRAITS and model.MODE == "catalog" and not model_config.VIEW.needed
    assert issubclass(model.PortModel, Llama3Model) and issubclass(decoder.PortDecoder, decoder.Transformer)


# --------------------------------------------------------------------------- written ports


def _request(family: str) -> PortRequest:
    source = open_source(str(family_twin_dir(family)))
    config = load_config(source)
    plan = make_plan(source.display, config, load_checkpoint(source), donor="llama3")
    assert plan.anatomy is not None
    rules = tuple(d.rule for d in plan.deltas)
    result = build_spec(plan.anatomy, config, list(rules))
    return PortRequest(port_names(config["architectures"][0], family), config, result.traits, rules=rules,
                       missing=tuple((m.rule, m.reason) for m in result.missing),
                       deltas=tuple((d.rule, d.hf, d.donor) for d in plan.deltas), model_source=str(source.root))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[PortRequest, dict[str, str], Path]]:
    """Every family's port (and its test file) written once, under one folder ruff reads in one run."""
    root = tmp_path_factory.mktemp("ports")
    ports = {}
    for family in FAMILIES:
        request = _request(family)
        files = port_files(request)
        for name, text in files.items():
            (root / family / family).mkdir(parents=True, exist_ok=True)
            (root / family / family / name).write_text(text)
        name, text = port_test_file(request)
        (root / family / name).write_text(text)
        ports[family] = (request, files, root / family)
    return ports


def test_written_ports_are_ruff_clean(written: dict[str, tuple[PortRequest, dict[str, str], Path]]) -> None:
    root = next(iter(written.values()))[2].parent
    result = subprocess.run([RUFF, "check", "--config", str(REPO_ROOT / "pyproject.toml"),
                             "--no-cache", "--output-format", "concise", str(root)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_port_holds_only_its_own_computation(family: str,
                                               written: dict[str, tuple[PortRequest, dict[str, str], Path]]) -> None:
    request, files, _dir = written[family]
    for name, text in files.items():
        tree = ast.parse(text)
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                    for a in n.names} | {n.module.split(".")[0] for n in ast.walk(tree)
                                         if isinstance(n, ast.ImportFrom) and n.module}
        assert "import_model" not in imported, f"{name} imports import-model: the port must stand alone"
        for word in ("TRAITS", "SPEC", "VIEW", "MODE"):
            assert not any(isinstance(n, ast.Name) and n.id == word for n in ast.walk(tree)), f"{name}: {word}"
        modules = {a.asname or a.name for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                   for a in n.names}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    base = target.value if isinstance(target, ast.Attribute) else None
                    assert not (isinstance(base, ast.Name) and base.id in modules), \
                        f"{name} assigns to an attribute of an imported module ({ast.unparse(target)})"
    registration = files["arch.py"]
    assert f'name="{request.names.architecture}"' in registration and "example_repo_ids=[]" in registration


@pytest.mark.parametrize("family", FAMILIES)
def test_every_implemented_delta_is_a_named_piece_of_the_port(
        family: str, written: dict[str, tuple[PortRequest, dict[str, str], Path]]) -> None:
    request, files, _dir = written[family]
    where = delta_locations(files, request)
    missing = {rule for rule, _reason in request.missing}
    for rule, places in where.items():
        if rule in missing or rule in ("qkv_layout", "mlp_fused", "tied_head", "unexplained_weights", "head_dim"):
            continue  # weight-table deltas live in the table renames writes; head_dim is read from the config
        assert places, f"{family}: delta {rule} has no named piece in the port"
    doc = ast.get_docstring(ast.parse(files[request.names.graph_file if request.mode == "catalog" else "model.py"]))
    for places in where.values():
        for place in places:
            assert place.split(": ")[1] in (doc or ""), f"{family}: the docstring does not point to {place}"


def test_helium_reuses_the_donor_graph_in_under_250_lines(
        written: dict[str, tuple[PortRequest, dict[str, str], Path]]) -> None:
    request, files, _dir = written["helium"]
    assert request.mode == "donor"
    assert "helium.py" not in files and "interleaved_rotary" in files["model_config.py"]
    assert sum(text.count("\n") for text in files.values()) <= 250


def test_catalog_families_write_their_decoder(written: dict[str, tuple[PortRequest, dict[str, str], Path]]) -> None:
    for family in ("gpt_neox", "gemma2", "exaone4"):
        request, files, _dir = written[family]
        assert request.mode == "catalog" and request.names.graph_file in files
    gpt_neox = written["gpt_neox"][1]["gpt_neox.py"]
    assert "def _parallel" in gpt_neox and "def _written_out" not in gpt_neox and "OffsetLayerNorm" not in gpt_neox
    gemma2 = written["gemma2"][1]["gemma2.py"]
    assert "def _written_out" in gemma2 and "def _parallel" not in gemma2


def test_the_port_test_file_names_its_package_and_model(
        written: dict[str, tuple[PortRequest, dict[str, str], Path]], tmp_path: Path) -> None:
    request, _files, folder = written["gpt_neox"]
    text = (folder / "test_gpt_neox.py").read_text()
    tree = ast.parse(text)
    assert {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} >= {"verdict", "test_no_layer_diverges"}
    assert json.dumps(request.model_source) in text and '"gpt_neox"' in text
    partial = (written["diffllama"][2] / "test_diffllama.py").read_text()
    assert "partial" in (ast.get_docstring(ast.parse(partial)) or "")
    check_test_file(folder / "test_gpt_neox.py")  # ours: may be replaced
    foreign = tmp_path / "test_gpt_neox.py"
    foreign.write_text("def test_mine():\n    assert True\n")
    with pytest.raises(UserError, match="not written by"):
        check_test_file(foreign)
    # A long class name wraps the file's first line: a rerun still knows the file as its own.
    from dataclasses import replace

    long_name = replace(request, names=port_names("ModernBertDecoderForCausalLMWithAVeryLongName", "gpt_neox"))
    name, wrapped = port_test_file(long_name)
    (tmp_path / "wrapped").mkdir()
    (tmp_path / "wrapped" / name).write_text(wrapped)
    check_test_file(tmp_path / "wrapped" / name)


# --------------------------------------------------------------------------- weight table


def test_weight_table_block_carries_only_the_code_its_tables_need(tmp_path: Path) -> None:
    adapters = (REPO_ROOT / "src/import_model/port/template/weight_adapters.py").read_text()
    renames_only = render_table_block(AdapterTable(renames={"transformer.h.*.ln.weight": "layers.*.norm.weight"}),
                                      "convert_safetensor_state_dict")
    assert "WEIGHT_RENAMES" in renames_only and "_split" not in renames_only and "WEIGHT_TIES" not in renames_only
    full = render_table_block(AdapterTable(renames={"a": "b"}, splits={"q.*.w": ("blocks", ("x", "y"), (1, 1))},
                                           concats={"z": ("blocks", ("c", "d"))}, ties={"lm_head.weight": "e"},
                                           drops={"f": "unused"}), "convert_safetensor_state_dict")
    empty = render_table_block(AdapterTable(), "convert_safetensor_state_dict")
    assert "def " not in empty and empty.count("import-model weight table") == 2
    for name, block in (("renames", renames_only), ("full", full), ("empty", empty)):
        (tmp_path / f"{name}.py").write_text(adapters + "\n\n" + block)
    result = subprocess.run([RUFF, "check", "--config", str(REPO_ROOT / "pyproject.toml"),
                             "--no-cache", "--output-format", "concise", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    stripped = _without_prefix_strips(AdapterTable(renames={"model.norm.weight": "norm.weight",
                                                            "model.layers.*.x": "layers.*.y"}))
    assert stripped.renames == {"model.layers.*.x": "layers.*.y"}


def test_the_config_view_keeps_every_alias_and_reads_nested_rope() -> None:
    from import_model.port.writer import config_view

    # CodeGen's config.json says n_head; its config class answers num_attention_heads through attribute_map.
    codegen = config_view({"n_head": 4, "layer_norm_epsilon": 1e-5, "n_inner": None, "rotary_dim": 4,
                           "n_positions": 2048})
    rows = dict(codegen.donor_keys)
    assert "num_attention_heads" in rows["num_key_value_heads"] and "layer_norm_epsilon" in rows["rms_norm_eps"]
    assert codegen.intermediate_default and dict(codegen.donor_defaults) == {"rope_theta": 10000.0}
    llama = config_view({"num_key_value_heads": 3, "rms_norm_eps": 1e-5, "intermediate_size": 64,
                         "rope_parameters": {"rope_theta": 1e5, "rope_type": "default"},
                         "max_position_embeddings": 2048})
    assert not llama.needed  # transformers 5 nests rope_theta: nothing to answer
    # Rope parameters keyed by layer type (Gemma 4 text): the donor is shown the full-attention layers' dict.
    per_type = config_view({"num_key_value_heads": 3, "rms_norm_eps": 1e-5, "intermediate_size": 64,
                            "max_position_embeddings": 2048,
                            "rope_parameters": {"full_attention": {"rope_theta": 1e6, "rope_type": "default"},
                                                "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"}}})
    assert per_type.rope_per_layer_type and per_type.needed and not per_type.donor_defaults
    # No position table at all (CPM-Ant's relative bias): the donor still sizes its context from a bound.
    relative = config_view({"num_key_value_heads": 3, "rms_norm_eps": 1e-5, "intermediate_size": 64,
                            "rope_theta": 1e4})
    assert dict(relative.donor_defaults) == {"max_position_embeddings": 4096}


def test_an_explicit_head_dim_keeps_the_decoder_written_out() -> None:
    from import_model.port.writer import mode_for

    interleaved = Traits(rotary_style="interleaved")
    base = {"hidden_size": 128, "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
            "intermediate_size": 256, "rope_theta": 1e4, "max_position_embeddings": 2048}
    assert mode_for(interleaved, base, ("rotary_style",), False) == "donor"
    assert mode_for(interleaved, {**base, "head_dim": 16}, ("rotary_style",), False) == "donor"
    # MAX's Llama3 rotates hidden_size / heads channels: ERNIE 4.5's head_dim 32 over 8 heads of a 128 model.
    assert mode_for(interleaved, {**base, "head_dim": 32}, ("rotary_style",), False) == "catalog"


def test_a_partial_port_stands_in_for_the_weights_no_tensor_fills(tmp_path: Path) -> None:
    """Stand-ins are written only into a port whose weight table left gaps, and that port is still ruff-clean."""
    from dataclasses import replace

    request = _request("gpt_neox")
    assert "with_stand_ins" not in port_files(request)["model.py"]
    partial = replace(request, stand_ins=(("layers.*.self_attn.q_proj.weight", "no checkpoint tensor fills it"),),
                      missing=(*request.missing, ("unfilled_weights", "the weight table leaves 2 missing")))
    files = port_files(partial)
    model = files["model.py"]
    assert '"layers.*.self_attn.q_proj.weight": "no checkpoint tensor fills it"' in model
    assert "weights = with_stand_ins(weights, decoder.raw_state_dict())" in model
    assert partial.mode == "catalog" and "TODO(delta unfilled_weights)" in files["gpt_neox.py"]
    for name, text in files.items():
        (tmp_path / "gpt_neox" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "gpt_neox" / name).write_text(text)
    result = subprocess.run([RUFF, "check", "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache",
                             "--output-format", "concise", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
