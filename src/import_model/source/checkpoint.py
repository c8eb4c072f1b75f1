"""A checkpoint's tensor inventory, assembled from safetensors headers only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from import_model.errors import UserError
from import_model.source.base import ModelSource
from import_model.source.safetensors_header import TensorInfo

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass
class Checkpoint:
    """Every tensor's name, dtype and shape, plus where the weights live."""

    #: ``"safetensors"``, ``"pickle"`` (only .bin/.pt files), ``"gguf"`` or ``"none"``.
    weight_format: str
    shards: list[str] = field(default_factory=list)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    other_weight_files: list[str] = field(default_factory=list)

    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def bytes_by_dtype(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for tensor in self.tensors.values():
            totals[tensor.dtype] += tensor.nbytes
        return dict(totals.most_common())

    def params_by_dtype(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for tensor in self.tensors.values():
            totals[tensor.dtype] += tensor.numel
        return dict(totals.most_common())


def load_checkpoint(source: ModelSource, progress: Callable[[str], None] | None = None) -> Checkpoint:
    """Read the shard index (if any) and every shard's header; no tensor data."""
    files = source.files()
    weight_files = [f for f in files if f.endswith(".safetensors")]
    others = [f for f in files if f.endswith(PICKLE_SUFFIXES) or f.endswith(".gguf")]
    if INDEX_FILE in files:
        shards = _shards_from_index(source)
    elif SINGLE_FILE in files:
        shards = [SINGLE_FILE]
    elif weight_files:
        shards = [f for f in weight_files if "/" not in f] or weight_files
    else:
        kind = "gguf" if any(f.endswith(".gguf") for f in others) else "pickle" if others else "none"
        return Checkpoint(weight_format=kind, other_weight_files=others)

    checkpoint = Checkpoint(weight_format="safetensors", shards=shards, other_weight_files=others)
    for number, shard in enumerate(shards, 1):
        if progress and len(shards) > 1:
            progress(f"reading header {number}/{len(shards)}: {shard}")
        header = source.safetensors_header(shard)
        for name, info in header.tensors.items():
            if name in checkpoint.tensors:
                raise UserError(f"{source.display}: tensor {name!r} appears in both {checkpoint.tensors[name].shard} and {shard}")
            checkpoint.tensors[name] = info
        checkpoint.metadata.update(header.metadata)
    return checkpoint


def _shards_from_index(source: ModelSource) -> list[str]:
    index = source.read_json(INDEX_FILE, required=True)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"{source.display}: {INDEX_FILE} has no weight_map object; re-download the index")
    shards: list[str] = []
    for key, shard in weight_map.items():
        if not isinstance(key, str) or not isinstance(shard, str) or not _safe_relative(shard):
            raise UserError(f"{source.display}: {INDEX_FILE} maps {str(key)[:60]!r} to an invalid shard name {str(shard)[:60]!r}")
        if shard not in shards:
            shards.append(shard)
    present = set(source.files())
    for shard in shards:
        if shard not in present:
            raise UserError(f"{source.display}: shard {shard} is listed in {INDEX_FILE} but absent; re-download the checkpoint")
    return shards


def _safe_relative(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and name.endswith(".safetensors")
