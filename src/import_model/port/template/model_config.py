"""Config of the port: the llama3 donor's config class, fed this family's ``config.json``."""

from __future__ import annotations

from typing import Any

from max.pipelines.architectures.llama3.model_config import Llama3Config
from typing_extensions import override

from import_model.plan.traits import Traits
from import_model.port.writer import ConfigView

from .decoder import CachePerKVHead, HeadWidthView, LatentCache, widest_head_dim, written_out_attention

#: The model's structural choices and what its config.json lacks; the writer evaluates every read of them.
TRAITS = Traits()
VIEW = ConfigView()

#: The donor's attribute name -> the keys this family keeps it under, first present wins.
DONOR_KEYS: dict[str, tuple[str, ...]] = {}

#: What the donor reads that this family leaves to its modeling code.
DONOR_DEFAULTS: dict[str, Any] = {}


def _single_kv_head(config: Any) -> bool:
    """Multi-query attention as the config flags it (a new-decoder config reads its KV heads instead)."""
    return getattr(config, "multi_query", None) is True and not getattr(config, "new_decoder_architecture", False)


class DonorNamedConfig:
    """A read-only view of the HF config that also answers the donor's attribute names."""

    def __init__(self, config: Any) -> None:
        object.__setattr__(self, "_config", config)

    @property
    def family_config(self) -> Any:
        """The HF config itself, for what the view reshapes for the donor (rope parameters per layer type)."""
        return object.__getattribute__(self, "_config")

    def __getattr__(self, name: str) -> Any:
        config = object.__getattribute__(self, "_config")
        if VIEW.rope_per_layer_type and name in ("rope_scaling", "rope_parameters", "rope_theta"):
            # the donor reads one flat rope dict: the full-attention layers' (the decoder builds each type's table)
            full = (getattr(config, "rope_parameters", None) or {}).get("full_attention") or {}
            return full.get("rope_theta") if name == "rope_theta" else full
        value = getattr(config, name, None)
        if value is not None:
            return value
        if VIEW.multi_query and name == "num_key_value_heads" and _single_kv_head(config):
            return 1
        for key in DONOR_KEYS.get(name, ()):
            value = getattr(config, key, None)
            if value is not None:
                return value
        if VIEW.intermediate_default and name == "intermediate_size":
            return 4 * config.hidden_size
        if name in DONOR_DEFAULTS:
            return DONOR_DEFAULTS[name]
        return getattr(config, name)

    def __contains__(self, name: str) -> bool:
        return name in object.__getattribute__(self, "_config")


def donor_view(config: Any) -> Any:
    """The HF config as the donor's config class and the decoder read it."""
    return DonorNamedConfig(config)


def interleaved_rotary(config: Llama3Config) -> Llama3Config:
    """Rotary over adjacent channel pairs ``(2i, 2i + 1)`` where the donor rotates halves: MAX's interleaved rope."""
    config.interleaved_rope_weights = True
    return config


class PortConfig(Llama3Config):
    """The donor's config class, float32 and bfloat16 only."""

    DEFAULT_ENCODING = "float32"
    SUPPORTED_ENCODINGS = {"float32", "bfloat16"}

    if VIEW.needed:
        @override
        @classmethod
        def initialize_from_config(cls, pipeline_config: Any, huggingface_config: Any, model_config: Any = None, *,
                                   max_seq_len: int) -> Any:
            return super().initialize_from_config(pipeline_config, donor_view(huggingface_config), model_config,
                                                  max_seq_len=max_seq_len)

        @override
        @classmethod
        def calculate_max_seq_len(cls, huggingface_config: Any, model_config: Any) -> int:
            return super().calculate_max_seq_len(donor_view(huggingface_config), model_config)

    if VIEW.needed or TRAITS.attention_softcap or TRAITS.differential_attention or TRAITS.alibi or TRAITS.sliding_window != "none" or TRAITS.full_head_dim or TRAITS.latent_attention != "none":  # noqa: E501
        @override
        @classmethod
        def construct_kv_params(cls, huggingface_config: Any, *args: Any, **kwargs: Any) -> Any:
            """The KV cache is sized from the family's config (with attention written out: one head per layer;
            with wider full-attention heads: the widest head; with latent attention: a key-wide head per query
            head)."""
            config = donor_view(huggingface_config) if VIEW.needed else huggingface_config
            if TRAITS.attention_softcap or TRAITS.differential_attention or TRAITS.alibi or TRAITS.sliding_window != "none":
                devices = kwargs.get("devices", args[1] if len(args) > 1 else ())
                if written_out_attention(config, devices):
                    config = CachePerKVHead(config)
            if TRAITS.full_head_dim:
                config = HeadWidthView(config, widest_head_dim(config))
            if TRAITS.latent_attention != "none":
                config = LatentCache(config)
            return super().construct_kv_params(config, *args, **kwargs)
