"""The weight table block ``import-model renames --write`` puts between its markers in ``weight_adapters.py``.

Everything below the ``TABLE`` line is the block: the tables (data the writer
fills in) and the code that applies them in front of the donor's safetensors
adapter, specialised so that a port whose checkpoint needs no split, stack or
tie carries no code for one. Imports live inside the functions, so the block
can follow any adapter module's own code.
"""

from __future__ import annotations

from max.pipelines.architectures.llama3.weight_adapters import convert_safetensor_state_dict

from import_model.port.renames import TableShape

TABLE = TableShape()

#: Checkpoint name -> graph name (``*`` stands for a layer or expert number).
WEIGHT_RENAMES: dict[str, str] = {}

#: Fused checkpoint tensor -> (layout, graph names, relative sizes).
WEIGHT_SPLITS: dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]] = {}

#: Graph name -> (layout, checkpoint tensors stacked along dim 0).
WEIGHT_CONCATS: dict[str, tuple[str, tuple[str, ...]]] = {}

#: Graph name -> checkpoint tensor it shares (tied embeddings).
WEIGHT_TIES: dict[str, str] = {}

#: Checkpoint tensors the graph does not use -> why.
WEIGHT_DROPS: dict[str, str] = {}

#: Checkpoint tensors stored (in, out), as transformers' ``Conv1D`` keeps them -> why; transposed before any other
#: table applies.
WEIGHT_TRANSPOSES: dict[str, str] = {}


def _numbers(name: str) -> list[str]:
    import re

    return re.findall(r"(?<![^.])\d+(?![^.])", name)


def _pattern(name: str) -> str:
    import re

    return re.sub(r"(?<![^.])\d+(?![^.])", "*", name)


def _fill(value: object, numbers: list[str]) -> object:
    """``value`` (a name or a tuple of them) with each ``*`` replaced by the next of ``numbers``."""
    if isinstance(value, str):
        for number in numbers:
            value = value.replace("*", number, 1)
        return value
    if isinstance(value, tuple):
        return tuple(_fill(item, numbers) for item in value)
    return value


def _lookup(name: str, table: dict[str, object]) -> object:
    if name in table:
        return table[name]
    value = table.get(_pattern(name))
    return None if value is None else _fill(value, _numbers(name))


class _Derived:
    """A tensor cut from, or stacked out of, checkpoint tensors; read when the adapter asks for it."""

    def __init__(self, name: str, make: object) -> None:
        self.name = name
        self._make = make

    def data(self) -> object:
        return self._make()


def _array(weight: object) -> tuple[object, object]:
    import numpy as np
    from max.dtype import DType

    data = weight.data()
    dtype = data.dtype
    if dtype == DType.bfloat16:
        data = data.astype(DType.float32)
    return np.from_dlpack(data.data), dtype


def _weight(array: object, dtype: object, name: str) -> object:
    import numpy as np
    from max.graph.weights import WeightData

    data = WeightData.from_numpy(np.ascontiguousarray(array), name)
    return data if data.dtype == dtype else data.astype(dtype)


def _transposed(weight: object, name: str) -> _Derived:
    def make() -> object:
        array, dtype = _array(weight)
        return _weight(array.T, dtype, name)
    return _Derived(name, make)


def _split(weight: object, layout: str, ratio: tuple[int, ...], index: int, heads: int | None, name: str) -> _Derived:
    """Part ``index`` of a fused tensor: contiguous blocks, four shards, grouped by KV head, or one expert's part
    of a stacked ``[experts, out, in]`` tensor."""
    def make() -> object:
        array, dtype = _array(weight)
        if layout == "stacked":
            array = array.reshape(-1, array.shape[-1])  # [experts * out, in]: expert by expert, parts in order
        rest = array.shape[1:]
        if layout == "four_shards":
            part = array.reshape(4, len(ratio), -1, *rest)[:, index].reshape(-1, *rest)
        elif layout == "per_head":
            # Grouped by KV head: each group holds its queries' heads, then one K and one V head (MHA:
            # a group per head; multi-query: one group, which is plain blocks).
            groups = int(heads or 0) // ratio[0]
            first = sum(ratio[:index])
            part = array.reshape(groups, sum(ratio), -1, *rest)[:, first:first + ratio[index]].reshape(-1, *rest)
        else:
            unit = array.shape[0] // sum(ratio)
            start = unit * sum(ratio[:index])
            part = array[start:start + unit * ratio[index]]
        return _weight(part, dtype, name)
    return _Derived(name, make)


def _concat(weights: list[object], layout: str, heads: int | None, name: str) -> _Derived:
    """Checkpoint tensors stacked along dim 0 (per head: interleaved head by head)."""
    def make() -> object:
        import numpy as np

        arrays = [_array(w) for w in weights]
        dtype = arrays[0][1]
        parts = [a for a, _ in arrays]
        if layout == "per_head":
            rest = parts[0].shape[1:]
            whole = np.stack([p.reshape(heads, -1, *rest) for p in parts], axis=1).reshape(-1, *rest)
        else:
            whole = np.concatenate(parts, axis=0)
        return _weight(whole, dtype, name)
    return _Derived(name, make)


def _concats(state_dict: dict[str, object], heads: int | None) -> tuple[dict[str, object], set[str]]:
    out: dict[str, object] = {}
    used: set[str] = set()
    for target, (layout, sources) in WEIGHT_CONCATS.items():
        for name in state_dict:
            if name != sources[0] and _pattern(name) != sources[0]:
                continue
            numbers = _numbers(name) if name != sources[0] else []
            names = _fill(sources, numbers)
            if all(n in state_dict for n in names):
                full = _fill(target, numbers)
                out[full] = _concat([state_dict[n] for n in names], layout, heads, full)
                used.update(names)
    return out, used


def apply_weight_table(state_dict: dict[str, object], huggingface_config: object = None) -> dict[str, object]:
    """Checkpoint names -> graph names through the tables above; names no table knows pass unchanged."""
    if TABLE.splits or TABLE.concats:
        heads = getattr(huggingface_config, "num_attention_heads", None)
    if TABLE.transposes:
        state_dict = {name: _transposed(weight, name) if name in WEIGHT_TRANSPOSES or _pattern(name) in
                      WEIGHT_TRANSPOSES else weight for name, weight in state_dict.items()}
    out: dict[str, object] = {}
    if TABLE.concats:
        stacked, used = _concats(state_dict, heads)
        out.update(stacked)
    for name, weight in state_dict.items():
        if TABLE.concats and name in used:
            continue
        if TABLE.drops and _lookup(name, WEIGHT_DROPS) is not None:
            continue
        if TABLE.splits:
            split = _lookup(name, WEIGHT_SPLITS)
            if split is not None:
                layout, targets, ratio = split
                for index, target in enumerate(targets):
                    out[target] = _split(weight, layout, ratio, index, heads, target)
                continue
        if TABLE.renames:
            renamed = _lookup(name, WEIGHT_RENAMES)
            out[renamed if renamed is not None else name] = weight
        else:
            out[name] = weight
    if TABLE.ties:
        shared = {v: k for k, v in WEIGHT_TIES.items()}
        for name, weight in state_dict.items():
            target = _lookup(name, shared)
            if target is not None:
                out.setdefault(target, weight)
    return out


_donor_adapter = convert_safetensor_state_dict


def convert_safetensor_state_dict(state_dict: dict[str, object], *args: object, **kwargs: object) -> object:
    """The donor's adapter, fed checkpoint tensors already renamed by ``apply_weight_table``."""
    huggingface_config = kwargs.get("huggingface_config", args[0] if args else None)
    return _donor_adapter(apply_weight_table(state_dict, huggingface_config), *args, **kwargs)
