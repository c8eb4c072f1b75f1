"""Pipeline model of the port: inputs, KV cache, batching and execution are the llama3 donor's."""

from __future__ import annotations

from typing import Any

from max.pipelines.architectures.llama3.model import Llama3Model
from max.pipelines.lib.graph_specs import GraphRole, GraphSpec
from typing_extensions import override

from import_model.plan.traits import Traits

from .decoder import PortDecoder
from .model_config import VIEW, PortConfig, donor_view, interleaved_rotary

#: The model's structural choices and how the port is written; the writer evaluates every read of them.
TRAITS = Traits()
MODE = "catalog"
#: Graph weights no checkpoint tensor fills yet (name, ``*`` for a layer number -> why), filled by the writer only
#: in a partial port: each is stood in so the port still builds and verify shows where it diverges.
STAND_INS: dict[str, str] = {}
PARTIAL_WEIGHTS = bool(STAND_INS)


def with_stand_ins(state_dict: dict[str, Any], graph_weights: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` plus a stand-in for each graph weight ``STAND_INS`` names that it lacks: ones for a norm's
    scale, zeros elsewhere (so the block passes its input on unchanged where it can)."""
    import fnmatch

    import numpy as np
    from max.graph.weights import WeightData

    out = dict(state_dict)
    for name, weight in graph_weights.items():
        if name in out or not any(fnmatch.fnmatchcase(name, pattern) for pattern in STAND_INS):
            continue
        shape = tuple(int(dim) for dim in weight.shape)
        fill = np.ones if "norm" in name and name.endswith(".weight") else np.zeros
        data = WeightData.from_numpy(fill(shape, dtype=np.float32), name)
        out[name] = data if data.dtype == weight.dtype else data.astype(weight.dtype)
    return out


class PortModel(Llama3Model):
    """The donor's pipeline model with the port's config, on one device."""

    config_class = PortConfig
    model_config_cls = PortConfig

    if MODE == "donor":
        @override
        def _create_model_config(self, state_dict: dict[str, Any]) -> Any:
            """The donor's config for MAX's own Llama3 graph, with the switches this family needs."""
            config = super()._create_model_config(state_dict)
            if TRAITS.rotary_style == "interleaved":
                config = interleaved_rotary(config)
            return config
    else:
        @override
        def _create_model_config(self, state_dict: dict[str, Any]) -> Any:
            config = PortConfig.initialize(self.pipeline_config, max_seq_len=self.max_seq_len)
            config.finalize(huggingface_config=self.huggingface_config, state_dict=state_dict,
                            norm_method="layer_norm", return_logits=self.return_logits,
                            return_hidden_states=self.return_hidden_states)
            return config

        @override
        def graph_specs(self, model_config: Any) -> dict[str, GraphSpec]:
            """The port's decoder, its weights loaded strictly (a weight it does not ask for is an error)."""
            if len(self.devices) != 1 or model_config.data_parallel_degree > 1:
                raise ValueError("this port runs on one device; pass a single --devices entry")
            config = donor_view(self.huggingface_config) if VIEW.needed else self.huggingface_config
            decoder = PortDecoder(
                config, kv_params=model_config.kv_params, dtype=model_config.dtype, devices=model_config.devices,
                max_seq_len=model_config.max_seq_len, return_logits=model_config.return_logits,
                tie_word_embeddings=model_config.tie_word_embeddings,
            )
            decoder.config = model_config
            weights = self.state_dict
            if PARTIAL_WEIGHTS:
                weights = with_stand_ins(weights, decoder.raw_state_dict())  # until the weight table fills them
            decoder.load_state_dict(weights, override_quantization_encoding=True, weight_alignment=1, strict=True)
            # One name for every port's decoder: MAX's compile cache keys a graph by its content, so an equal
            # graph written by another port comes back under the name it was first compiled with.
            inputs = self._bind_graph_inputs(decoder.input_tree(self.kv_params))
            return {GraphRole.DECODER: GraphSpec(decoder, "decoder", inputs, weights=decoder.state_dict())}
