"""Let MAX donors written for GPUs build and run on one CPU.

Some MAX 26.7 architectures (qwen3, gemma3) construct their all-reduce layers and signal buffers
even for a single device: ``Allreduce`` opens one accelerator per device when it is constructed,
and ``Signals.allocate`` initialises its buffers with GPU-only steps, which fail or crash on a
machine without one. On one device the all-reduce sums a single tensor, so it needs no peers; the
graph still takes one signal buffer per device as an input. These patches give the layer no
accelerators and hand out plain zeroed host buffers (or none, for a build that never executes).
The graph itself is untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

Patch = tuple[Any, str, Any]


def one_device_collective_patches(*, signal_buffers: bool) -> list[Patch]:
    """Patches for a single-CPU build; ``signal_buffers`` False hands out none (a dry build never runs)."""
    from max.nn.comm.allreduce import Allreduce, MulticastPool, Signals
    from max.nn.layer.layer import Module

    def allreduce_without_accelerators(layer: Any, num_accelerators: int) -> None:
        Module.__init__(layer)
        layer.devices = []

    def zeroed_host_buffers(devices: Any) -> list[Any]:
        from max.driver import Buffer
        from max.dtype import DType

        return [Buffer.zeros(shape=(Signals.NUM_BYTES,), dtype=DType.uint8, device=device) for device in devices]

    allocate = zeroed_host_buffers if signal_buffers else (lambda *_a, **_k: [])
    return [
        (Allreduce, "__init__", allreduce_without_accelerators),
        (Signals, "allocate", staticmethod(allocate)),
        (MulticastPool, "allocate", staticmethod(lambda *_a, **_k: None)),
    ]


@contextlib.contextmanager
def patched(patches: list[Patch]) -> Iterator[None]:
    """Set each ``(owner, name, value)`` for the duration of the block, then restore the originals."""
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
