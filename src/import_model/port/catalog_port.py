"""Write a port built from the delta catalog: MAX's Llama3 pipeline plumbing, the model's own decoder.

The port has the seed's layout (``__init__.py``, ``arch.py``, ``model_config.py``,
``model.py``, ``weight_adapters.py``, ``<slug>.py``) plus ``layers.py``, the
catalog blocks copied from ``port/template/layers.py``. ``<slug>.py`` holds
``SPEC``, one line per choice of the family with the delta it answers, and
the decoder class built from it. Missing deltas are written into ``SPEC``'s
comments and the module docstring, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from import_model.port.catalog import BY_RULE, SpecResult
from import_model.port.scaffold import PortNames, check_files, write_package

TEMPLATE = Path(__file__).with_name("template") / "layers.py"


@dataclass(frozen=True)
class CatalogPortRequest:
    names: PortNames
    spec: SpecResult
    example_repo: str
    delta_rules: tuple[str, ...] = ()


def _docstring(request: CatalogPortRequest) -> str:
    names, result = request.names, request.spec
    applied = ", ".join(e.id for e in result.applied) or "none (the donor's block shape)"
    lines = [f"The {names.architecture} decoder graph, assembled from import-model's delta catalog.", "",
             f"Deltas implemented here, relative to the llama3 donor's block: {applied}."]
    if result.missing:
        lines += ["", "NOT implemented (this port does not yet compute what the reference computes):"]
        lines += [f"- {m.trait}: {m.reason}" for m in result.missing]
    else:
        lines += ["Every trait the planner found is covered; `import-model verify` checks parity (result in PORT.md)."]
    return "\n".join(lines)


def render_spec(result: SpecResult) -> str:
    """``SPEC`` as a dict literal, one field per line; fields a catalog entry set say which delta they answer."""
    why = {name: entry for entry in result.applied for name in entry.fields}
    lines = ["{"]
    for key, value in result.spec.items():
        note = f"  # delta {why[key].id}" if key in why else ""
        lines.append(f"    {key!r}: {value!r},{note}")
    return "\n".join(lines + ["}"])


def render_graph(request: CatalogPortRequest) -> str:
    names, result = request.names, request.spec
    spec_text = render_spec(result)
    missing = "".join(f"# TODO(delta {m.rule}): {m.reason}\n" for m in result.missing)
    return f'''"""{_docstring(request)}
"""

from __future__ import annotations

from typing import Any

from .layers import CatalogDecoder

#: The family's structural choices (numbers come from config.json at build time).
{missing}SPEC: dict[str, Any] = {spec_text}


class {names.graph}(CatalogDecoder):
    """{names.architecture}: the catalog decoder with this family's ``SPEC``."""

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(SPEC, config, **kwargs)
'''


def render_config(names: PortNames) -> str:
    return f'''"""Config for the {names.architecture} port: a subclass of the llama3 donor's config class.

Some families keep the numbers the donor's config reads under other keys (no
``num_key_value_heads``, ``layer_norm_eps`` for the eps); the view below
answers the donor's names from the family's own before MAX reads them. The KV
cache is sized through ``kv_cache_config_view``: a family whose attention the
port writes out (attention-logit soft-cap) keeps one KV head per cache layer.
"""

from __future__ import annotations

from typing import Any

from max.pipelines.architectures.llama3.model_config import Llama3Config

from .layers import kv_cache_config_view
from .{names.slug} import SPEC

#: The donor's attribute name -> keys the family may use instead, first present wins.
LLAMA_NAMES: dict[str, tuple[str, ...]] = {{
    "num_key_value_heads": ("num_kv_heads", "n_head_kv", "num_attention_heads"),
    "rms_norm_eps": ("layer_norm_eps", "norm_eps", "layer_norm_epsilon", "norm_epsilon"),
    "intermediate_size": ("n_inner", "ffn_hidden_size"),
    "rope_theta": ("rotary_emb_base",),
}}

#: What the donor reads that a family may leave to its modeling code (GPT-J's rotary base is fixed there).
LLAMA_DEFAULTS: dict[str, Any] = {{"rope_theta": 10000.0}}


def _single_kv_head(config: Any) -> bool:
    """Multi-query attention as falcon and gpt_bigcode flag it (falcon's new decoder reads num_kv_heads instead)."""
    return getattr(config, "multi_query", None) is True and not getattr(config, "new_decoder_architecture", False)


class LlamaNamedConfig:
    """A read-only view of an HF config that also answers the donor's attribute names."""

    def __init__(self, config: Any) -> None:
        object.__setattr__(self, "_config", config)

    def __getattr__(self, name: str) -> Any:
        config = object.__getattribute__(self, "_config")
        value = getattr(config, name, None)
        if value is None and name == "num_key_value_heads" and _single_kv_head(config):
            return 1
        if value is None:
            for alias in LLAMA_NAMES.get(name, ()):
                value = getattr(config, alias, None)
                if value is not None:
                    return value
            if name == "intermediate_size":
                return 4 * config.hidden_size
            if name in LLAMA_DEFAULTS:
                return LLAMA_DEFAULTS[name]
            return getattr(config, name)
        return value

    def __contains__(self, name: str) -> bool:
        return name in object.__getattribute__(self, "_config")


class {names.config}(Llama3Config):
    """The donor's config, inherited, fed through the view above; float32 and bfloat16 only."""

    DEFAULT_ENCODING = "float32"
    SUPPORTED_ENCODINGS = {{"float32", "bfloat16"}}

    @classmethod
    def initialize_from_config(cls, pipeline_config: Any, huggingface_config: Any, model_config: Any = None, *,
                               max_seq_len: int) -> Any:
        return super().initialize_from_config(pipeline_config, LlamaNamedConfig(huggingface_config), model_config,
                                              max_seq_len=max_seq_len)

    @classmethod
    def construct_kv_params(cls, huggingface_config: Any, *args: Any, **kwargs: Any) -> Any:
        return super().construct_kv_params(kv_cache_config_view(SPEC, LlamaNamedConfig(huggingface_config)), *args,
                                           **kwargs)
'''


def render_model(names: PortNames) -> str:
    return f'''"""Pipeline model for the {names.architecture} port.

Inputs, KV cache, batching and execution are inherited from the llama3 donor's
pipeline model; the decoder graph is the port's own (``{names.graph_file}``).
One device only.
"""

from __future__ import annotations

from typing import Any

from max.pipelines.architectures.llama3 import model as llama3_model
from max.pipelines.architectures.llama3.model import Llama3Model
from max.pipelines.lib.graph_specs import GraphRole, GraphSpec, init_graphs

from .model_config import LlamaNamedConfig, {names.config}
from .{names.slug} import {names.graph}


def _init_graphs_any_name(session: Any, artifacts: Any, specs: dict[Any, GraphSpec]) -> dict[Any, Any]:
    """MAX's ``init_graphs``, also when the compile cache hands back an equal graph under another port's name.

    The cache keys a compiled graph by its content, not its name: two ports whose graphs are equal (two
    families with the same deltas, on twins of the same size) share the artifact of whichever compiled first.
    """
    try:
        return init_graphs(session, artifacts, specs)
    except KeyError:
        if len(specs) != 1 or len(artifacts.compiled) != 1:
            raise
        ((role, spec),) = specs.items()
        by_name = session.init_all(artifacts.compiled[0], weights_registry=spec.weights_registry())
        if len(by_name) != 1:
            raise
        return {{role: next(iter(by_name.values()))}}


class {names.model}(Llama3Model):
    """Subclass of the donor's pipeline model with the port's config and decoder."""

    config_class = {names.config}
    model_config_cls = {names.config}

    def load_graphs(self, session: Any) -> Any:
        """The donor's ``load_graphs`` with :func:`_init_graphs_any_name` in place of MAX's ``init_graphs``."""
        original = llama3_model.init_graphs
        llama3_model.init_graphs = _init_graphs_any_name
        try:
            return super().load_graphs(session)
        finally:
            llama3_model.init_graphs = original

    def _create_model_config(self, state_dict: dict[str, Any]) -> Any:
        config = {names.config}.initialize(self.pipeline_config, max_seq_len=self.max_seq_len)
        config.finalize(huggingface_config=self.huggingface_config, state_dict=state_dict, norm_method="layer_norm",
                        return_logits=self.return_logits, return_hidden_states=self.return_hidden_states)
        return config

    def graph_specs(self, model_config: Any) -> dict[str, GraphSpec]:
        if len(self.devices) != 1 or model_config.data_parallel_degree > 1:
            raise ValueError("the {names.slug} port runs on one device; pass a single --devices entry")
        decoder = {names.graph}(
            LlamaNamedConfig(self.huggingface_config), kv_params=model_config.kv_params, dtype=model_config.dtype,
            devices=model_config.devices, max_seq_len=model_config.max_seq_len,
            return_logits=model_config.return_logits, tie_word_embeddings=model_config.tie_word_embeddings,
        )
        decoder.config = model_config
        decoder.load_state_dict(self.state_dict, override_quantization_encoding=True, weight_alignment=1,
                                strict=True)
        return {{GraphRole.DECODER: GraphSpec(decoder, "{names.slug}",
                                             self._bind_graph_inputs(decoder.input_tree(self.kv_params)),
                                             weights=decoder.state_dict())}}
'''


def render_adapters(names: PortNames) -> str:
    return f'''"""Weight adapter for the {names.architecture} port: checkpoint names onto the decoder's names.

The table below is derived by ``import-model renames --write`` from the
checkpoint's keys and the names the decoder asks for; the adapter imported
from the llama3 donor then casts to the requested dtype.
"""

from __future__ import annotations

from max.pipelines.architectures.llama3.weight_adapters import convert_safetensor_state_dict

__all__ = ["convert_safetensor_state_dict"]
'''


def render_arch(names: PortNames, example_repo: str) -> str:
    return f'''"""Registration of the {names.architecture} port (import-model catalog port)."""

from __future__ import annotations

from max.graph.weights import WeightsFormat
from max.pipelines.architectures.llama3.batch_processor import Llama3BatchProcessor
from max.pipelines.context import TextContext
from max.pipelines.kv_cache.memory_planner import PagedMemoryPlanner
from max.pipelines.lib import SupportedArchitecture, TextTokenizer
from max.pipelines.modeling.types import PipelineTask

from . import weight_adapters
from .model import {names.model}
from .model_config import LlamaNamedConfig, {names.config}

{names.symbol} = SupportedArchitecture(
    name="{names.architecture}",
    example_repo_ids=[{example_repo!r}],
    default_encoding={names.config}.DEFAULT_ENCODING,
    supported_encodings={names.config}.SUPPORTED_ENCODINGS,
    pipeline_model={names.model},
    tokenizer=TextTokenizer,
    context_type=TextContext,
    default_weights_format=WeightsFormat.safetensors,
    multi_gpu_supported=False,
    weight_adapters={{WeightsFormat.safetensors: weight_adapters.convert_safetensor_state_dict}},
    task=PipelineTask.TEXT_GENERATION,
    config={names.config},
    batching=Llama3BatchProcessor,
    memory_planner=PagedMemoryPlanner,
)
'''


def render_init(names: PortNames) -> str:
    return f'''"""{names.architecture} for MAX, written by `import-model port` from its delta catalog."""

from .arch import {names.symbol}

ARCHITECTURES = [{names.symbol}]

__all__ = ["ARCHITECTURES"]
'''


def catalog_files(request: CatalogPortRequest) -> dict[str, str]:
    names = request.names
    files = {
        "__init__.py": render_init(names),
        "arch.py": render_arch(names, request.example_repo),
        "model_config.py": render_config(names),
        "model.py": render_model(names),
        "weight_adapters.py": render_adapters(names),
        names.graph_file: render_graph(request),
        "layers.py": _layers_text(),
    }
    check_files(files)
    return files


def _layers_text() -> str:
    year = date.today().year
    return f"# Written by import-model ({year}): the delta catalog's MAX blocks.\n" + TEMPLATE.read_text()


def write_catalog_port(out_dir: Path, request: CatalogPortRequest) -> Path:
    """Write ``out_dir/<slug>`` atomically (the caller has checked it may be replaced)."""
    return write_package(out_dir, request.names.slug, catalog_files(request))


def entry_rows(result: SpecResult, rules: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per plan delta: the catalog entry that implements it, or why none does."""
    rows = []
    for rule in dict.fromkeys(rules):
        entry = BY_RULE.get(rule)
        missing = next((m for m in result.missing if m.rule == rule), None)
        rows.append({"rule": rule, "entry": entry.id if entry else None,
                     "status": "implemented" if entry and missing is None else "missing",
                     "how": entry.summary if entry else (missing.reason if missing else "no catalog entry")})
    return rows
