"""Weight adapter of the port: the llama3 donor's, which strips the ``model.`` prefix and casts to the dtype.

``import-model renames --write`` adds the weight table below when the
checkpoint's names or layout differ from what the decoder asks for.
"""

from __future__ import annotations

from max.pipelines.architectures.llama3.weight_adapters import convert_safetensor_state_dict

__all__ = ["convert_safetensor_state_dict"]
