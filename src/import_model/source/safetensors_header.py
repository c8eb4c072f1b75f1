"""Parse and validate a safetensors header without touching tensor data.

The format: 8 bytes little-endian u64 ``N``, then ``N`` bytes of JSON mapping
tensor names to ``{"dtype", "shape", "data_offsets"}`` plus an optional
``"__metadata__"`` object of strings. Headers come from strangers' repos, so
every field is checked and the declared length is capped before anything is
read.

The data section must be laid out the way the safetensors library itself
requires before it loads a file: tensors tile it exactly, from byte 0, without
overlaps or gaps (and, when the file size is known, without trailing bytes).
A header that breaks this is refused here, naming the two tensors, instead of
failing later inside the loader. Duplicate keys are refused too (plain
``json.loads`` would keep the last one silently).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from import_model.errors import UserError

#: Largest header we agree to read. Real headers of 1T-parameter checkpoints
#: are a few MiB; anything near this cap is hostile or corrupt.
MAX_HEADER_BYTES = 64 * 1024 * 1024

#: Bytes per element for every dtype the safetensors format defines.
DTYPE_BYTES: dict[str, float] = {
    "F64": 8, "I64": 8, "U64": 8,
    "F32": 4, "I32": 4, "U32": 4,
    "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1,
    "F6_E2M3": 0.75, "F6_E3M2": 0.75, "F4": 0.5,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header declares it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard: str

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return int(self.numel * DTYPE_BYTES[self.dtype])


@dataclass
class SafetensorsHeader:
    """The parsed header of one safetensors file."""

    shard: str
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    header_bytes: int = 0


def declared_header_length(prefix: bytes, shard: str, file_size: int | None) -> int:
    """Read the u64 length prefix and refuse lengths that cannot be honest."""
    if len(prefix) < 8:
        raise UserError(f"{shard}: file is shorter than a safetensors length prefix (8 bytes); it is truncated or not safetensors")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length < 2:
        raise UserError(f"{shard}: safetensors header length {length} is too small to hold a JSON object; the file is corrupt")
    if length > MAX_HEADER_BYTES:
        raise UserError(
            f"{shard}: safetensors header declares {length} bytes, over the {MAX_HEADER_BYTES // (1024 * 1024)} MiB cap; "
            "the file is corrupt or hostile"
        )
    if file_size is not None and length + 8 > file_size:
        raise UserError(
            f"{shard}: safetensors header declares {length} bytes but the file has only {file_size}; "
            "the file is truncated or corrupt (re-download it)"
        )
    return length


def parse_header_json(raw: bytes, shard: str, data_size: int | None = None) -> SafetensorsHeader:
    """Validate the JSON body of a header; ``data_size`` bounds the offsets when known."""
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as dup:
        raise UserError(f"{shard}: safetensors header names {dup.key[:80]!r} twice; the file is corrupt or hostile") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UserError(f"{shard}: safetensors header is not valid JSON ({_short(exc)}); the file is corrupt") from None
    if not isinstance(doc, dict):
        raise UserError(f"{shard}: safetensors header is a JSON {type(doc).__name__}, not an object; the file is corrupt")
    header = SafetensorsHeader(shard=shard, header_bytes=len(raw))
    for name, entry in doc.items():
        if name == "__metadata__":
            header.metadata = _validate_metadata(entry, shard)
            continue
        header.tensors[name] = _validate_tensor(name, entry, shard, data_size)
    _check_layout(header, doc, data_size)
    return header


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``object_pairs_hook`` that refuses a key seen twice in one JSON object."""
    doc: dict[str, object] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKey(key)
        doc[key] = value
    return doc


def _check_layout(header: SafetensorsHeader, doc: dict, data_size: int | None) -> None:
    """Tensors must tile the data section from 0 with no overlap or gap, as the safetensors loader requires."""
    spans = sorted((doc[name]["data_offsets"][0], doc[name]["data_offsets"][1], name) for name in header.tensors)
    cursor, previous = 0, None
    for begin, end, name in spans:
        if begin < cursor:
            raise UserError(f"{header.shard}: tensors {previous[:80]!r} and {name[:80]!r} overlap in the data section "
                            f"(bytes {begin}..{cursor}); the header is corrupt or hostile")
        if begin > cursor:
            after = f"after {previous[:80]!r}" if previous is not None else "at the start of the data section"
            raise UserError(f"{header.shard}: {begin - cursor} unclaimed bytes {after}, before tensor {name[:80]!r}; "
                            "safetensors requires tensors packed from byte 0, so the header is corrupt")
        cursor, previous = end, name
    if data_size is not None and cursor != data_size:
        last = f"the last tensor {previous[:80]!r}" if previous is not None else "the header (no tensors)"
        raise UserError(f"{header.shard}: {data_size - cursor} stray bytes follow {last}; "
                        "safetensors refuses such files, so it is corrupt (re-download it)")


def _validate_metadata(entry: object, shard: str) -> dict[str, str]:
    if entry is None:
        return {}
    if not isinstance(entry, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
        raise UserError(f"{shard}: safetensors __metadata__ must map strings to strings; the file is corrupt")
    return dict(entry)


def _validate_tensor(name: str, entry: object, shard: str, data_size: int | None) -> TensorInfo:
    where = f"{shard}: tensor {name[:80]!r}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} has no dtype/shape/offsets object; the header is corrupt")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise UserError(f"{where} has unknown dtype {str(dtype)[:20]!r}; the header is corrupt or uses a newer format")
    if not isinstance(shape, list) or len(shape) > 16 or not all(_is_count(d) for d in shape):
        raise UserError(f"{where} has an invalid shape; the header is corrupt")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise UserError(f"{where} has invalid data_offsets; the header is corrupt")
    begin, end = offsets
    info = TensorInfo(name=name, dtype=dtype, shape=tuple(shape), shard=shard)
    if end < begin or end - begin != info.nbytes:
        raise UserError(f"{where}: data_offsets span {end - begin} bytes but dtype and shape need {info.nbytes}; the header is corrupt")
    if data_size is not None and end > data_size:
        raise UserError(f"{where} points past the end of the file; the file is truncated")
    return info


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
