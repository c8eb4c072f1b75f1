"""The safetensors header parser on good, corrupt and hostile files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from import_model.errors import UserError
from import_model.source.local import LocalSource
from import_model.source.safetensors_header import MAX_HEADER_BYTES, parse_header_json


def _write_raw(path: Path, header: bytes, body: bytes = b"", declared: int | None = None) -> None:
    length = len(header) if declared is None else declared
    path.write_bytes(struct.pack("<Q", length) + header + body)


def test_real_file_round_trip(tmp_path: Path) -> None:
    save_file({"a.weight": np.zeros((3, 5), np.float32), "b": np.ones(7, np.int8)}, tmp_path / "m.safetensors",
              metadata={"format": "pt"})
    header = LocalSource(tmp_path).safetensors_header("m.safetensors")
    assert header.tensors["a.weight"].shape == (3, 5)
    assert header.tensors["a.weight"].dtype == "F32"
    assert header.tensors["a.weight"].nbytes == 60
    assert header.tensors["b"].numel == 7
    assert header.metadata == {"format": "pt"}


@pytest.mark.parametrize(
    ("header", "body", "declared", "message"),
    [
        (b"{}", b"", MAX_HEADER_BYTES + 1, "cap"),
        (b"{}", b"", 10_000, "declares 10000 bytes but the file has only"),
        (b"not json", b"", None, "not valid JSON"),
        (b"[1, 2]", b"", None, "not an object"),
        (json.dumps({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}).encode(), b"\0" * 8, None,
         "need 8"),
        (json.dumps({"t": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}).encode(), b"\0" * 4, None,
         "unknown dtype"),
        (json.dumps({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}).encode(), b"", None,
         "invalid shape"),
        (json.dumps({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode(), b"\0" * 4, None,
         "past the end"),
        (json.dumps({"__metadata__": {"a": 1}}).encode(), b"", None, "__metadata__"),
    ],
)
def test_corrupt_headers_give_one_clear_error(tmp_path: Path, header: bytes, body: bytes, declared: int | None,
                                              message: str) -> None:
    _write_raw(tmp_path / "m.safetensors", header, body, declared)
    with pytest.raises(UserError) as info:
        LocalSource(tmp_path).safetensors_header("m.safetensors")
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_truncated_prefix(tmp_path: Path) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(UserError, match="shorter than a safetensors length prefix"):
        LocalSource(tmp_path).safetensors_header("m.safetensors")


def test_deeply_nested_json_is_refused_cleanly() -> None:
    with pytest.raises(UserError):
        parse_header_json(b"[" * 100_000 + b"]" * 100_000, "x.safetensors")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(st.text(max_size=10), _json_values, max_size=6))
def test_fuzz_random_json_headers_never_crash(doc: dict) -> None:
    try:
        header = parse_header_json(json.dumps(doc).encode(), "fuzz.safetensors", data_size=1 << 20)
    except UserError as exc:
        assert exc.message.startswith("fuzz.safetensors")
    else:
        assert all(t.nbytes >= 0 for t in header.tensors.values())


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=64))
def test_fuzz_random_bytes_never_crash(raw: bytes) -> None:
    try:
        header = parse_header_json(raw, "fuzz.safetensors")
    except UserError as exc:
        assert "fuzz.safetensors" in exc.message
    else:
        assert isinstance(header.tensors, dict)


def _entry(begin: int, end: int) -> dict:
    """A U8 tensor spanning ``begin..end`` (one byte per element, so any span is consistent)."""
    return {"dtype": "U8", "shape": [end - begin], "data_offsets": [begin, end]}


@pytest.mark.parametrize(
    ("tensors", "data_size", "needles"),
    [
        ({"a": _entry(0, 8), "b": _entry(4, 12)}, 12, ["'a' and 'b' overlap", "bytes 4..8"]),
        ({"a": _entry(0, 8), "b": _entry(0, 8)}, 8, ["'a' and 'b' overlap"]),
        ({"big": _entry(0, 16), "inside": _entry(4, 8)}, 16, ["'big' and 'inside' overlap"]),
        ({"a": _entry(0, 4), "b": _entry(6, 10)}, 10, ["2 unclaimed bytes after 'a'", "before tensor 'b'"]),
        ({"late": _entry(4, 8)}, 8, ["4 unclaimed bytes at the start of the data section", "'late'"]),
        ({"a": _entry(0, 4)}, 6, ["2 stray bytes follow the last tensor 'a'"]),
        ({}, 3, ["3 stray bytes follow the header (no tensors)"]),
    ],
)
def test_overlapping_gapped_or_padded_layouts_are_refused(tensors: dict, data_size: int, needles: list[str]) -> None:
    with pytest.raises(UserError) as info:
        parse_header_json(json.dumps(tensors).encode(), "shard-1.safetensors", data_size=data_size)
    message = info.value.message
    assert message.startswith("shard-1.safetensors: ") and "\n" not in message
    for needle in needles:
        assert needle in message


def test_packed_layout_in_any_key_order_is_accepted() -> None:
    """Zero-size tensors share an offset; keys need not be listed in offset order; hub reads pass no size."""
    tensors = {"c": _entry(6, 10), "empty": _entry(6, 6), "a": _entry(0, 4), "b": _entry(4, 6), "z": _entry(10, 10)}
    header = parse_header_json(json.dumps(tensors).encode(), "m.safetensors", data_size=10)
    assert set(header.tensors) == set(tensors)
    assert set(parse_header_json(json.dumps(tensors).encode(), "m.safetensors").tensors) == set(tensors)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},'
         b' "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', "w"),
        (b'{"w": {"dtype": "U8", "dtype": "F32", "shape": [1], "data_offsets": [0, 1]}}', "dtype"),
        (b'{"__metadata__": {"format": "pt", "format": "np"}}', "format"),
    ],
)
def test_duplicate_keys_are_refused(raw: bytes, name: str) -> None:
    with pytest.raises(UserError) as info:
        parse_header_json(raw, "dup.safetensors")
    assert info.value.message.startswith(f"dup.safetensors: safetensors header names {name!r} twice")


def test_hostile_layout_in_a_file_names_the_shard(tmp_path: Path) -> None:
    header = json.dumps({"x": _entry(0, 8), "y": _entry(2, 10)}).encode()
    _write_raw(tmp_path / "model-00002-of-00003.safetensors", header, b"\0" * 10)
    with pytest.raises(UserError, match=r"^model-00002-of-00003\.safetensors: tensors 'x' and 'y' overlap"):
        LocalSource(tmp_path).safetensors_header("model-00002-of-00003.safetensors")


def test_files_written_by_safetensors_parse(tmp_path: Path) -> None:
    """The library pads the header, aligns nothing else: its layout is packed, and must be accepted."""
    arrays = {f"layer.{i}.w": np.zeros((i + 1, 3), dtype) for i, dtype in
              enumerate([np.float32, np.float16, np.int8, np.int64, np.uint8, np.float64])}
    arrays["empty"] = np.zeros((0, 4), np.float32)
    save_file(arrays, tmp_path / "m.safetensors")
    assert set(LocalSource(tmp_path).safetensors_header("m.safetensors").tensors) == set(arrays)
