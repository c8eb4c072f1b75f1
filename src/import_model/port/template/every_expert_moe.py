"""MAX's ``MoE`` with a CPU path: what ``check-native`` puts in a copied registration whose experts MAX's
grouped-matmul kernels would run (they have no CPU implementation).

The registration's own gate and expert MLPs are kept: on a CPU every expert runs on every token and the gate's
top-k weights (zero for the experts a token did not choose) combine their outputs, which is the sum MAX's
kernels compute for the chosen experts. On any other device MAX's own ``MoE.__call__`` runs unchanged.
"""

from __future__ import annotations

from typing import Any

from max.dtype import DType
from max.graph import TensorValue, ops
from max.nn.moe import MoE


def _combine(indices: TensorValue, weights: TensorValue, count: int) -> TensorValue:
    """``[tokens, count]`` float32: each expert's weight in a token's top-k (0 for the experts it did not choose).

    One broadcast over ``[tokens, k, count]`` and a sum over k, with no column of the gate's output sliced out.
    """
    experts = ops.range(0, count, 1, out_dim=count, dtype=indices.dtype, device=indices.device)
    hits = ops.cast(ops.equal(ops.unsqueeze(indices, -1), experts.reshape((1, 1, -1))), DType.float32)
    return ops.sum(hits * ops.unsqueeze(ops.cast(weights, DType.float32), -1), axis=1).reshape((-1, count))


class EveryExpertMoE(MoE):
    """``MoE`` whose routed experts, on a CPU, are every expert weighed by the gate's choice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.dtype != DType.bfloat16 and not kwargs.get("is_sharding"):
            # MAX builds every gate in bfloat16; a float32 checkpoint's router weights are float32
            self.gate = self.gate_cls(devices=self.devices, hidden_dim=self.hidden_dim,
                                      num_experts=self.num_logical_experts,
                                      num_experts_per_token=self.num_experts_per_token, dtype=self.dtype)

    def __call__(self, x: TensorValue) -> TensorValue:
        if not self.devices[0].is_cpu():
            return super().__call__(x)
        indices, weights = self.gate(x)
        if self.pre_expert_norm is not None:
            x = self.pre_expert_norm(x)
        combine = ops.cast(_combine(indices, weights, self.num_experts), x.dtype)
        out = None
        for j, expert in enumerate(self.experts):
            y = expert.down_proj(self._gated(expert.gate_proj(x), expert.up_proj(x))) * combine[:, j:j + 1]
            out = y if out is None else out + y
        assert out is not None
        if self.has_shared_experts:
            out = out + self.shared_experts(x)
        return out

    def _gated(self, gate: TensorValue, up: TensorValue) -> TensorValue:
        """The activation MAX's kernels apply between the gate-up and down projections."""
        if self.activation.gated_activation_fn is not None:
            return self.activation.gated_activation_fn(ops.concat([gate, up], axis=-1), self.moe_dim)
        if self.activation.fused_activation == "silu" and self.activation.limit == 0.0:
            return ops.silu(gate) * up
        if self.activation.fused_activation == "gelu_tanh":
            return ops.gelu(gate, approximate="tanh") * up
        raise NotImplementedError(f"the CPU expert path has no {self.activation.fused_activation!r} activation "
                                  "(a clamped or biased gated activation); the check cannot run it")
