"""Registration of the port: the HF class it serves, its pipeline model, config, adapter and encodings."""

from __future__ import annotations

from max.graph.weights import WeightsFormat
from max.pipelines.architectures.llama3.batch_processor import Llama3BatchProcessor
from max.pipelines.context import TextContext
from max.pipelines.kv_cache.memory_planner import PagedMemoryPlanner
from max.pipelines.lib import SupportedArchitecture, TextTokenizer
from max.pipelines.modeling.types import PipelineTask

from import_model.port.writer import Registration

from . import weight_adapters
from .model import PortModel
from .model_config import PortConfig

#: The HF class the port registers and the hub repositories it is known to serve; the writer fills them in.
REGISTRATION = Registration()

port_arch = SupportedArchitecture(
    name=REGISTRATION.architecture,
    example_repo_ids=REGISTRATION.example_repo_ids,
    default_encoding=PortConfig.DEFAULT_ENCODING,
    supported_encodings=PortConfig.SUPPORTED_ENCODINGS,
    pipeline_model=PortModel,
    tokenizer=TextTokenizer,
    context_type=TextContext,
    default_weights_format=WeightsFormat.safetensors,
    multi_gpu_supported=False,
    weight_adapters={WeightsFormat.safetensors: weight_adapters.convert_safetensor_state_dict},
    task=PipelineTask.TEXT_GENERATION,
    config=PortConfig,
    batching=Llama3BatchProcessor,
    memory_planner=PagedMemoryPlanner,
)
