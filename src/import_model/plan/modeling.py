"""Read Hugging Face modeling code statically: never import it, parse it.

:class:`SourceTree` parses ``modeling_*.py`` files with :mod:`ast` and resolves
class names through ``from ..other.modeling_other import X`` imports and base
classes, so a ``class MyAttention(LlamaAttention)`` is read through Llama's
code. :func:`build_module_tree` "instantiates" a model class on paper: it walks
``__init__`` bodies with a small evaluator over the config, records every
submodule and parameter (which gives the checkpoint key names a class would
have), and keeps each submodule's evaluated ``self.*`` attributes and raw
assignment expressions for the behaviour detectors in
:mod:`import_model.plan.anatomy`.

The evaluator understands the handful of expression shapes HF ``__init__``
methods use (``config.x``, ``getattr(config, "x", d)``, arithmetic, ``if``
expressions); anything else evaluates to :data:`UNKNOWN`.
"""

from __future__ import annotations

import ast
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from import_model.recon.transformers_files import (
    SAFE_NAME,
    auto_tables,
    module_name,
    parse_file,
    transformers_models_dir,
)

#: What an expression the evaluator cannot follow evaluates to.
UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "UNKNOWN", "__bool__": lambda self: False})()

#: Guards that keep a strange or hostile source from making the walk slow.
MAX_DEPTH = 10
MAX_NODES = 400

#: ``torch.nn`` constructors -> the parameters they own (``bias`` is decided per call).
BUILTIN_MODULES: dict[str, str] = {
    "Linear": "linear",
    "Embedding": "embedding",
    "LayerNorm": "layernorm",
    "RMSNorm": "rmsnorm",
    "Dropout": "dropout",
    "Conv1d": "conv",
    "Conv1D": "linear",  # transformers' pytorch_utils.Conv1D (GPT-2): a linear layer stored (in, out)
    "Identity": "identity",
}
#: Module kinds that behave as the identity at inference.
IDENTITY_KINDS = frozenset({"dropout", "identity"})


def modeling_path(model_type: str) -> Path | None:
    root, name = transformers_models_dir(), module_name(model_type)
    if root is None or name is None:
        return None
    # one folder may hold several model types, each in its own file (data2vec-text: data2vec/modeling_data2vec_text.py)
    own = model_type.replace("-", "_")
    paths = [root / name / f"modeling_{name}.py", root / name / f"modeling_{own}.py"]
    return next((path for path in paths if SAFE_NAME.fullmatch(own) and path.is_file()), None)


def hf_config_class(model_type: str) -> Any:
    """transformers' own config class for ``model_type``; one registered at run time only where it has none.

    Importing MAX registers config shims with transformers, some of them over transformers' own class
    (``deepseek_v4``), so reading the live registry would make an anatomy depend on what the process imported.
    """
    import transformers
    from transformers import CONFIG_MAPPING

    name = auto_tables("auto_mappings.py").get("CONFIG_MAPPING_NAMES", {}).get(model_type)
    own = getattr(transformers, name, None) if isinstance(name, str) else None
    return own if own is not None else CONFIG_MAPPING[model_type]


def causal_lm_class(model_type: str) -> str | None:
    value = auto_tables("modeling_auto.py").get("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", {}).get(model_type)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ConfigDefaults:
    """A config class read from source: field defaults, attribute aliases, fields its __post_init__ derives."""

    values: dict[str, Any]
    aliases: dict[str, str]
    derived: frozenset[str]


_LITERAL_ERRORS = (ValueError, TypeError, SyntaxError, RecursionError, AttributeError)
#: Class-level names of a config class that are not config fields.
_NOT_FIELDS = frozenset({"model_type", "keys_to_ignore_at_inference", "base_model_tp_plan", "base_model_pp_plan",
                         "base_model_ep_plan", "sub_configs", "attribute_map", "base_config_key"})


@cache
def config_defaults(model_type: str) -> ConfigDefaults | None:
    """The defaults transformers' config class for ``model_type`` fills in, read without importing it."""
    root, name = transformers_models_dir(), module_name(model_type)
    class_name = auto_tables("auto_mappings.py").get("CONFIG_MAPPING_NAMES", {}).get(model_type)
    if root is None or name is None or not isinstance(class_name, str):
        return None
    tree = SourceTree()
    ref = tree.find_class(root / name / f"configuration_{name}.py", class_name)
    if ref is None:
        return None
    values: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    derived: set[str] = set()
    for owner in tree.lineage(ref):
        node = tree.class_node(owner)
        for stmt in node.body if node else []:
            _read_config_stmt(stmt, values, aliases, derived)
    return ConfigDefaults(values, aliases, frozenset(derived))


def _read_config_stmt(stmt: ast.stmt, values: dict[str, Any], aliases: dict[str, str], derived: set[str]) -> None:
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        name = stmt.target.id
        if name not in values and name not in _NOT_FIELDS and not name.startswith("_"):
            with contextlib.suppress(*_LITERAL_ERRORS):
                values[name] = ast.literal_eval(stmt.value)
    elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and _dotted(stmt.targets[0]) == "attribute_map":
        with contextlib.suppress(*_LITERAL_ERRORS):
            found = ast.literal_eval(stmt.value)
            for alias, target in found.items() if isinstance(found, dict) else []:
                aliases.setdefault(alias, target)
    elif isinstance(stmt, ast.FunctionDef) and stmt.name == "__post_init__":
        for node in ast.walk(stmt):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and _dotted(target.value) == "self":
                        derived.add(target.attr)


#: Auto tables searched for a class name, most specific first.
_CLASS_TABLES = (
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
    "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
    "MODEL_MAPPING_NAMES",
)


def model_type_of_class(class_name: str) -> str | None:
    """The model_type whose auto mapping names ``class_name``; None if transformers lacks the class."""
    tables = auto_tables("modeling_auto.py")
    for table in _CLASS_TABLES:
        found = [model_type for model_type, value in tables.get(table, {}).items()
                 if class_name in (value if isinstance(value, (list, tuple)) else [value])]
        if found:  # a text-only model_type beats the composite one that shares the class (llama4_text)
            return next((t for t in found if t.endswith("_text")), found[0])
    return None


# --------------------------------------------------------------------------- parsing and resolving


@dataclass
class ModuleInfo:
    path: Path
    classes: dict[str, ast.ClassDef]
    functions: dict[str, ast.FunctionDef]
    imports: dict[str, tuple[Path, str]]  # local name -> (file, name there)
    #: Module-level ``NAME = {"eager": SomeAttention, ...}`` tables of classes (or of functions), by name.
    class_tables: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassRef:
    """A class found in some parsed file."""

    name: str
    path: Path

    def __repr__(self) -> str:
        return f"{self.path.parent.name}.{self.name}"


class SourceTree:
    """Parsed modeling files, with class and function lookup across ``from ..x.modeling_x import`` edges."""

    def __init__(self, extra_root: Path | None = None) -> None:
        self._modules: dict[Path, ModuleInfo | None] = {}
        self._extra_root = extra_root

    def module(self, path: Path) -> ModuleInfo | None:
        if path not in self._modules:
            self._modules[path] = self._index(path)
        return self._modules[path]

    def _index(self, path: Path) -> ModuleInfo | None:
        tree = parse_file(path)
        if tree is None:
            return None
        info = ModuleInfo(path, {}, {}, {})
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                info.classes[node.name] = node
            elif isinstance(node, ast.FunctionDef):
                info.functions[node.name] = node
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and isinstance(node.value, ast.Dict):
                table = {k.value: v.id for k, v in zip(node.value.keys, node.value.values, strict=True)
                         if isinstance(k, ast.Constant) and isinstance(k.value, str) and isinstance(v, ast.Name)}
                if table:
                    info.class_tables[node.targets[0].id] = table
            elif isinstance(node, ast.ImportFrom) and node.level >= 1 and node.module:
                target = self._import_target(path, node.level, node.module)
                for alias in node.names if target else []:
                    info.imports[alias.asname or alias.name] = (target, alias.name)
        return info

    def _import_target(self, path: Path, level: int, module: str) -> Path | None:
        """Only sibling files and other model folders resolve; library internals stay opaque."""
        parts = module.split(".")
        if not all(SAFE_NAME.fullmatch(p) for p in parts):
            return None
        base = path.parent
        for _ in range(level - 1):
            base = base.parent
        target = base.joinpath(*parts).with_suffix(".py")
        roots = [r for r in (transformers_models_dir(), self._extra_root) if r is not None]
        inside = any(_is_within(target, root) for root in roots)
        return target if inside and target.is_file() else None

    def find_class(self, path: Path, name: str, depth: int = 0) -> ClassRef | None:
        info = self.module(path)
        if info is None or depth > 4:
            return None
        if name in info.classes:
            return ClassRef(name, path)
        if name in info.imports:
            target, original = info.imports[name]
            return self.find_class(target, original, depth + 1)
        return None

    def find_function(self, path: Path, name: str, depth: int = 0) -> tuple[ast.FunctionDef, Path] | None:
        info = self.module(path)
        if info is None or depth > 4:
            return None
        if name in info.functions:
            return info.functions[name], path
        if name in info.imports:
            target, original = info.imports[name]
            return self.find_function(target, original, depth + 1)
        return None

    def class_node(self, ref: ClassRef) -> ast.ClassDef | None:
        info = self.module(ref.path)
        return info.classes.get(ref.name) if info else None

    def bases(self, ref: ClassRef) -> list[ClassRef]:
        node = self.class_node(ref)
        found = []
        for base in node.bases if node else []:
            if isinstance(base, ast.Name) and (parent := self.find_class(ref.path, base.id)) and parent != ref:
                found.append(parent)
        return found

    def base_names(self, ref: ClassRef) -> list[str]:
        node = self.class_node(ref)
        return [_dotted(b) for b in node.bases] if node else []

    def lineage(self, ref: ClassRef) -> list[ClassRef]:
        """The class and its resolvable ancestors, depth first (a simple MRO)."""
        order: list[ClassRef] = []
        stack = [ref]
        while stack and len(order) < 16:
            current = stack.pop(0)
            if current in order:
                continue
            order.append(current)
            stack[0:0] = self.bases(current)
        return order

    def method(self, ref: ClassRef, name: str) -> tuple[ast.FunctionDef, ClassRef] | None:
        for owner in self.lineage(ref):
            node = self.class_node(owner)
            for stmt in node.body if node else []:
                if isinstance(stmt, ast.FunctionDef) and stmt.name == name:
                    return stmt, owner
        return None

    def methods(self, ref: ClassRef) -> Iterator[tuple[ast.FunctionDef, ClassRef]]:
        """Every method visible on the class, nearest definition first."""
        seen: set[str] = set()
        for owner in self.lineage(ref):
            node = self.class_node(owner)
            for stmt in node.body if node else []:
                if isinstance(stmt, ast.FunctionDef) and stmt.name not in seen:
                    seen.add(stmt.name)
                    yield stmt, owner


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


# --------------------------------------------------------------------------- a tiny evaluator


class Env:
    """Names visible while reading one ``__init__``: its arguments, ``self.*`` so far, and the config."""

    def __init__(self, config: dict, names: dict[str, Any] | None = None) -> None:
        self.config = config
        self.names: dict[str, Any] = names or {}
        self.attrs: dict[str, Any] = {}

    def child(self, names: dict[str, Any]) -> Env:
        return Env(self.config, names)


def _config_get(config: dict, key: str, default: Any = UNKNOWN) -> Any:
    return config.get(key, default) if isinstance(config, dict) else default


_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b if abs(b) <= 8 else UNKNOWN,
}
_COMPARES = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b, ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FUNCS = {"int": int, "float": float, "bool": bool, "len": len, "max": max, "min": min, "abs": abs}


def evaluate(node: ast.expr | None, env: Env) -> Any:
    """The value of ``node`` under ``env``, or :data:`UNKNOWN`; never raises."""
    if node is None:
        return None
    try:
        return _eval(node, env)
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, OverflowError, AttributeError,
            RecursionError):
        return UNKNOWN


def _eval(node: ast.expr, env: Env) -> Any:  # noqa: C901 - one branch per expression shape
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id == "config":
            return env.names.get("config", env.config)
        return env.names.get(node.id, UNKNOWN)
    if isinstance(node, ast.Attribute):
        return _eval_attribute(node, env)
    if isinstance(node, ast.Subscript):
        base, key = _eval(node.value, env), _eval(node.slice, env)
        if base is UNKNOWN or key is UNKNOWN or isinstance(key, slice):
            return UNKNOWN
        return base[key] if isinstance(base, (dict, list, tuple)) else UNKNOWN
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, env), _eval(node.right, env)
        if _is_number(left) and _is_number(right):
            return _BINOPS[type(node.op)](left, right)
        return UNKNOWN
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(node.op, ast.USub) and _is_number(value) else UNKNOWN
    if isinstance(node, ast.BoolOp):
        return _eval_boolop(node, env)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARES:
        left, right = _eval(node.left, env), _eval(node.comparators[0], env)
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        return _COMPARES[type(node.ops[0])](left, right)
    if isinstance(node, ast.IfExp):
        test = _eval(node.test, env)
        if test is UNKNOWN:
            return UNKNOWN
        return _eval(node.body if test else node.orelse, env)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_eval(item, env) for item in node.elts[:64])
    if isinstance(node, ast.Call):
        return _eval_call(node, env)
    return UNKNOWN


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def _eval_attribute(node: ast.Attribute, env: Env) -> Any:
    owner = node.value
    if isinstance(owner, ast.Name) and owner.id == "self":
        return env.attrs.get(node.attr, UNKNOWN)
    if _dotted(owner) in ("config", "self.config"):
        return _config_get(env.names.get("config", env.config), node.attr)
    base = _eval(owner, env)
    if isinstance(base, dict):
        return base.get(node.attr, UNKNOWN)
    return UNKNOWN


def _eval_boolop(node: ast.BoolOp, env: Env) -> Any:
    values = [_eval(v, env) for v in node.values]
    if isinstance(node.op, ast.And):
        if any(v is not UNKNOWN and not v for v in values):
            return next(v for v in values if v is not UNKNOWN and not v)
        return UNKNOWN if UNKNOWN in values else values[-1]
    for value in values:
        if value is UNKNOWN:
            return UNKNOWN
        if value:
            return value
    return values[-1]


def _eval_call(node: ast.Call, env: Env) -> Any:
    name = _dotted(node.func)
    if name == "getattr" and len(node.args) >= 2:
        owner, key = _eval(node.args[0], env), _eval(node.args[1], env)
        default = _eval(node.args[2], env) if len(node.args) > 2 else UNKNOWN
        if isinstance(owner, dict) and isinstance(key, str):
            return owner.get(key, default)
        return UNKNOWN
    if name in ("torch.tensor", "torch.scalar_tensor") and node.args:
        return _eval(node.args[0], env)
    if name in ("math.sqrt",) and node.args:
        value = _eval(node.args[0], env)
        return math.sqrt(value) if _is_number(value) and value >= 0 else UNKNOWN
    if name.endswith(".get") and node.args and isinstance(node.func, ast.Attribute):
        owner, key = _eval(node.func.value, env), _eval(node.args[0], env)
        default = _eval(node.args[1], env) if len(node.args) > 1 else None
        return owner.get(key, default) if isinstance(owner, dict) and isinstance(key, (str, int)) else UNKNOWN
    if name in _FUNCS and node.args and not node.keywords:
        args = [_eval(a, env) for a in node.args]
        return UNKNOWN if any(a is UNKNOWN for a in args) else _FUNCS[name](*args)
    return UNKNOWN


# --------------------------------------------------------------------------- module trees


@dataclass
class ModuleNode:
    """One submodule a class would build: its kind, class, parameters and attributes."""

    path: str
    kind: str  # linear | embedding | layernorm | rmsnorm | dropout | module | list | opaque
    ref: ClassRef | None = None
    call: ast.Call | None = None
    children: dict[str, ModuleNode] = field(default_factory=dict)
    params: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    exprs: dict[str, ast.expr] = field(default_factory=dict)
    activations: list[str] = field(default_factory=list)
    env: Env | None = None
    #: attr -> the submodule the ``__init__``'s other branch builds there (a layer's MoE block where this layer
    #: index got a dense MLP: dots.llm1, GLM-4-MoE, DeepSeek's first_k_dense_replace)
    alternatives: dict[str, ModuleNode] = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        return self.ref.name if self.ref else self.kind

    def walk(self) -> Iterator[ModuleNode]:
        yield self
        for child in self.children.values():
            yield from child.walk()

    def keys(self) -> dict[str, tuple[int, ...] | None]:
        """Checkpoint key -> shape (None where the shape could not be evaluated)."""
        found: dict[str, tuple[int, ...] | None] = {}
        for node in self.walk():
            for name, shape in node.params.items():
                found[f"{node.path}.{name}" if node.path else name] = shape
        return found


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0


def build_module_tree(tree: SourceTree, root: ClassRef, config: dict) -> ModuleNode:
    """The submodule tree ``root(config)`` would build, read from source."""
    node = ModuleNode(path="", kind="module", ref=root)
    _instantiate(tree, node, Env(config, {"config": config}), _Budget(), depth=0)
    return node


def _bind_arguments(func: ast.FunctionDef, call: ast.Call | None, caller: Env) -> dict[str, Any]:
    """Map the call's arguments (evaluated in the caller) onto the parameter names, defaults filled in."""
    params = [a.arg for a in func.args.args][1:]  # drop self
    defaults = func.args.defaults
    names: dict[str, Any] = {}
    for name, default in zip(params[len(params) - len(defaults):], defaults, strict=True):
        names[name] = evaluate(default, caller)
    for arg in func.args.kwonlyargs:
        names[arg.arg] = UNKNOWN
    for kwarg, default in zip(func.args.kwonlyargs, func.args.kw_defaults, strict=True):
        if default is not None:
            names[kwarg.arg] = evaluate(default, caller)
    if call is not None:
        for name, arg in zip(params, call.args, strict=False):
            if not isinstance(arg, ast.Starred):
                names[name] = evaluate(arg, caller)
        for kw in call.keywords:
            if kw.arg:
                names[kw.arg] = evaluate(kw.value, caller)
    for name in params:
        names.setdefault(name, UNKNOWN)
    if names.get("config") is UNKNOWN or "config" not in names:
        names["config"] = caller.config
    return names


def _instantiate(tree: SourceTree, node: ModuleNode, caller: Env, budget: _Budget, depth: int) -> None:
    if node.ref is None or depth > MAX_DEPTH:
        return
    found = tree.method(node.ref, "__init__")
    if found is None:
        return
    init, owner = found
    env = caller.child(_bind_arguments(init, node.call, caller))
    node.env = env
    _walk_init(tree, node, owner, init.body, env, budget, depth)


def _walk_init(tree: SourceTree, node: ModuleNode, owner: ClassRef, body: list[ast.stmt], env: Env,
               budget: _Budget, depth: int) -> None:
    for stmt in body:
        if isinstance(stmt, ast.If):
            test = evaluate(stmt.test, env)
            branch = stmt.body if test is UNKNOWN or test else stmt.orelse
            _walk_init(tree, node, owner, branch, env, budget, depth)
            other = stmt.orelse if branch is stmt.body else stmt.body
            if test is not UNKNOWN and other:
                _walk_alternative(tree, node, owner, other, env, depth)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and _is_super_init(stmt.value):
            _walk_super(tree, node, owner, stmt.value, env, budget, depth)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                _assign(tree, node, target, stmt.value, env, budget, depth)


def _walk_alternative(tree: SourceTree, node: ModuleNode, owner: ClassRef, body: list[ast.stmt], env: Env,
                      depth: int) -> None:
    """Read the branch the config did not take on a scratch copy; keep the submodules it builds in place of another
    class as ``node.alternatives``."""
    shadow = ModuleNode(path=node.path, kind=node.kind, ref=node.ref, call=node.call)
    scratch = Env(dict(env.config) if isinstance(env.config, dict) else env.config, dict(env.names))
    scratch.attrs = dict(env.attrs)
    _walk_init(tree, shadow, owner, body, scratch, _Budget(), depth)  # its own budget: the real tree's stays whole
    for attr, child in shadow.children.items():
        taken = node.children.get(attr)
        if taken is None or taken.class_name != child.class_name:
            node.alternatives.setdefault(attr, child)


def _is_super_init(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == "__init__" and isinstance(func.value, ast.Call)
            and _dotted(func.value.func) == "super")


def _walk_super(tree: SourceTree, node: ModuleNode, owner: ClassRef, call: ast.Call, env: Env,
                budget: _Budget, depth: int) -> None:
    for parent in tree.bases(owner):
        found = tree.method(parent, "__init__")
        if found is None:
            continue
        init, parent_owner = found
        parent_env = env.child(_bind_arguments(init, call, env))
        parent_env.attrs = env.attrs  # one object: attributes land on the same self
        _walk_init(tree, node, parent_owner, init.body, parent_env, budget, depth + 1)
        return
    for base in tree.base_names(owner):  # e.g. class ScaledWordEmbedding(nn.Embedding)
        builtin = _builtin(node.path, base.rsplit(".", 1)[-1], call, env, budget)
        if builtin is not None:
            node.params.update(builtin.params)
            node.values["builtin_base"] = builtin.kind
            return


def _chosen_branch(node: ast.IfExp, env: Env) -> ast.expr:
    """The branch the config selects; when the test cannot be evaluated, the one that is not an identity."""
    test = evaluate(node.test, env)
    if test is not UNKNOWN:
        return node.body if test else node.orelse
    body_is_identity = isinstance(node.body, ast.Call) and _dotted(node.body.func).endswith("Identity")
    return node.orelse if body_is_identity else node.body


def _assign(tree: SourceTree, node: ModuleNode, target: ast.expr, value: ast.expr, env: Env,
            budget: _Budget, depth: int) -> None:
    if isinstance(target, ast.Name):
        env.names[target.id] = evaluate(value, env)
        return
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "config":
        config = _eval(target.value, env)  # e.g. falcon: ``config.num_ln_in_parallel_attn = 2``; later reads see it
        result = evaluate(value, env)
        if isinstance(config, dict) and result is not UNKNOWN:
            config[target.attr] = result
        return
    if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"):
        return
    attr = target.attr
    if isinstance(value, ast.IfExp):  # e.g. ``Norm(...) if config.use_post_norm else nn.Identity()``
        chosen = _chosen_branch(value, env)
        other = value.orelse if chosen is value.body else value.body
        if evaluate(value.test, env) is not UNKNOWN:
            _walk_alternative(tree, node, node.ref, [ast.Assign(targets=[target], value=other)], env,  # type: ignore[arg-type]
                              depth)
        value = chosen
    node.exprs[attr] = value
    if isinstance(value, ast.Call) and _dotted(value.func).rsplit(".", 1)[-1] == "Parameter" and value.args:
        node.params[attr] = _tensor_shape(value.args[0], env)
        return
    owner = node.ref.path if node.ref else None
    child = _module_from(tree, owner, _join(node.path, attr), value, env, budget, depth) if owner else None
    if child is not None:
        node.children[attr] = child
        env.attrs[attr] = UNKNOWN
        return
    node.children.pop(attr, None)
    result = evaluate(value, env)
    env.attrs[attr] = result
    node.values[attr] = result
    activation = _activation_name(value, env) or (_table_activation(tree, owner, value, env) if owner else None)
    if activation:
        node.activations.append(activation)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


#: Activation modules a block may build directly -> the ACT2FN name of what they compute.
ACTIVATION_MODULES: dict[str, str] = {"GELU": "gelu", "SiLU": "silu", "ReLU": "relu", "Tanh": "tanh",
                                      "GELUActivation": "gelu", "NewGELUActivation": "gelu_new"}


#: Activation functions a family's own table may hand out (GPT-1's ``ACT_FNS = {"gelu": gelu_new, ...}``) -> the
#: ACT2FN name of what they compute.
ACTIVATION_FUNCTIONS: dict[str, str] = {"gelu_new": "gelu_new", "gelu": "gelu", "silu": "silu", "swish": "silu",
                                        "relu": "relu", "quick_gelu": "quick_gelu", "gelu_fast": "gelu_fast"}


def _table_activation(tree: SourceTree, owner: Path, value: ast.expr, env: Env) -> str | None:
    """``ACT_FNS[config.afn]`` over a module-level table of activation functions -> the chosen one's name."""
    if not (isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name)):
        return None
    info = tree.module(owner)
    table = info.class_tables.get(value.value.id) if info else None
    key = evaluate(value.slice, env)
    chosen = table.get(key) if table and isinstance(key, str) else None
    return ACTIVATION_FUNCTIONS.get(chosen) if chosen else None


def _activation_name(value: ast.expr, env: Env) -> str | None:
    """``ACT2FN[config.hidden_act]``, ``get_activation(config.activation)`` or ``nn.GELU()`` -> the name."""
    if isinstance(value, ast.Subscript) and _dotted(value.value) in ("ACT2FN", "ACT2CLS"):
        name = evaluate(value.slice, env)
        return name if isinstance(name, str) else None
    if not isinstance(value, ast.Call):
        return None
    leaf = _dotted(value.func).rsplit(".", 1)[-1]
    if leaf == "get_activation" and value.args:
        name = evaluate(value.args[0], env)
        return name if isinstance(name, str) else None
    if leaf in ACTIVATION_MODULES:
        approximate = next((evaluate(k.value, env) for k in value.keywords if k.arg == "approximate"), None)
        return "gelu_pytorch_tanh" if leaf == "GELU" and approximate == "tanh" else ACTIVATION_MODULES[leaf]
    return None


def _module_from(tree: SourceTree, owner: Path, path: str, value: ast.expr, env: Env,
                 budget: _Budget, depth: int) -> ModuleNode | None:
    """The submodule that ``self.<attr> = value`` builds inside a class defined in ``owner``."""
    if not isinstance(value, ast.Call) or budget.nodes >= MAX_NODES:
        return None
    chosen = _class_from_table(tree, owner, value.func)
    if chosen is not None:  # ``FALCON_ATTENTION_CLASSES[config._attn_implementation](config)``: the eager class
        value = ast.Call(func=ast.Name(id=chosen, ctx=ast.Load()), args=value.args, keywords=value.keywords)
    name = _dotted(value.func)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "Sequential" and value.args and not isinstance(value.args[0], (ast.ListComp, ast.List, ast.Tuple)):
        return _sequential(tree, owner, path, value, env, budget, depth)
    if leaf in ("ModuleList", "Sequential"):
        return _module_list(tree, owner, path, value, env, budget, depth)
    if isinstance(value.func, ast.Name):
        built = _built_by_function(tree, owner, value, env)
        if built is not None:  # CTRL's point_wise_feed_forward_network(d, dff) returns its MLP
            return _module_from(tree, owner, path, built[0], built[1], budget, depth)
        ref = tree.find_class(owner, value.func.id)
        if ref is not None:
            budget.nodes += 1
            child = ModuleNode(path=path, kind="module", ref=ref, call=value)
            _instantiate(tree, child, env, budget, depth + 1)
            if _is_norm_class(tree, ref) and not child.children:  # RobertaPreLayerNormAttention holds modules
                child.kind = "norm"
            return child
    if name.startswith(("nn.", "torch.nn.")) or name in BUILTIN_MODULES:
        return _builtin(path, leaf, value, env, budget)
    return None


def _built_by_function(tree: SourceTree, owner: Path, call: ast.Call, env: Env) -> tuple[ast.expr, Env] | None:
    """A module-level function whose body only returns a module: what it returns, its parameters bound to the
    call's evaluated arguments."""
    found = tree.find_function(owner, call.func.id) if isinstance(call.func, ast.Name) else None
    if found is None:
        return None
    function = found[0]
    body = [stmt for stmt in function.body if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or not isinstance(body[0].value, ast.Call):
        return None
    params = [arg.arg for arg in function.args.args]
    bound = dict(zip(params, (evaluate(arg, env) for arg in call.args), strict=False))
    bound |= {kw.arg: evaluate(kw.value, env) for kw in call.keywords if kw.arg in params}
    local = env.child({**env.names, **bound})
    local.attrs = env.attrs
    return body[0].value, local


def _class_from_table(tree: SourceTree, owner: Path, func: ast.expr) -> str | None:
    """The class a module-level class table hands out: its ``eager`` entry, else its first."""
    if not (isinstance(func, ast.Subscript) and isinstance(func.value, ast.Name)):
        return None
    info = tree.module(owner)
    table = info.class_tables.get(func.value.id) if info else None
    if not table:
        return None
    return table.get("eager") or next(iter(table.values()))


def _is_norm_class(tree: SourceTree, ref: ClassRef) -> bool:
    names = [ref.name, *tree.base_names(ref)]
    return any("norm" in n.lower() for n in names)


def _builtin(path: str, leaf: str, call: ast.Call, env: Env, budget: _Budget) -> ModuleNode | None:
    kind = BUILTIN_MODULES.get(leaf)
    if kind is None:
        return None
    budget.nodes += 1
    node = ModuleNode(path=path, kind=kind, call=call)
    args = [evaluate(a, env) for a in call.args]
    kwargs = {kw.arg: evaluate(kw.value, env) for kw in call.keywords if kw.arg}
    if leaf == "Conv1D":  # Conv1D(nf, nx): weight (nx, nf), always a bias
        fan_out, fan_in = (args + [UNKNOWN, UNKNOWN])[:2]
        node.params["weight"] = _shape(fan_in, fan_out)
        node.params["bias"] = _shape(fan_out)
        node.values["transposed"] = True
    elif kind == "linear":
        fan_in = args[0] if args else kwargs.get("in_features", UNKNOWN)
        fan_out = args[1] if len(args) > 1 else kwargs.get("out_features", UNKNOWN)
        node.params["weight"] = _shape(fan_out, fan_in)
        if _flag(args[2] if len(args) > 2 else kwargs.get("bias", True)):
            node.params["bias"] = _shape(fan_out)
    elif kind == "embedding":
        node.params["weight"] = _shape(*(args[:2] if len(args) >= 2 else [UNKNOWN, UNKNOWN]))
    elif kind in ("layernorm", "rmsnorm"):
        dim = args[0] if args else kwargs.get("normalized_shape", UNKNOWN)
        if _flag(kwargs.get("elementwise_affine", True)):
            node.params["weight"] = _shape(dim)
            if kind == "layernorm" and _flag(kwargs.get("bias", True)):
                node.params["bias"] = _shape(dim)
    return node


def _flag(value: Any) -> bool:
    """A ``bias=`` argument: unknown counts as on (PyTorch's default)."""
    return True if value is UNKNOWN else bool(value)


def _module_list(tree: SourceTree, owner: Path, path: str, call: ast.Call, env: Env, budget: _Budget,
                 depth: int) -> ModuleNode:
    """``nn.ModuleList([Block(config, i) for i in range(n)])`` -> one ``{i}`` child that stands for all."""
    node = ModuleNode(path=path, kind="list", call=call)
    inner = call.args[0] if call.args else None
    element = None
    item_env = env
    if isinstance(inner, ast.ListComp):
        element = inner.elt
        loop_names = {g.target.id: 0 for g in inner.generators if isinstance(g.target, ast.Name)}
        item_env = env.child({**env.names, **loop_names})
        item_env.attrs = env.attrs
    elif isinstance(inner, (ast.List, ast.Tuple)) and inner.elts:
        element = inner.elts[0]
    if element is not None:
        child = _module_from(tree, owner, f"{path}.{{i}}", element, item_env, budget, depth)
        if child is not None:
            node.children["{i}"] = child
    return node


def _sequential(tree: SourceTree, owner: Path, path: str, call: ast.Call, env: Env, budget: _Budget,
                depth: int) -> ModuleNode:
    """``nn.Sequential(nn.Linear(...), nn.ReLU(), nn.Linear(...))`` (CTRL's MLP): its modules as children named by
    position, as the checkpoint names them; activation modules among them are recorded as the node's activations."""
    node = ModuleNode(path=path, kind="sequential", call=call)
    for position, element in enumerate(call.args):
        child = _module_from(tree, owner, f"{path}.{position}", element, env, budget, depth)
        if child is not None:
            node.children[str(position)] = child
        elif (activation := _activation_name(element, env)) is not None:
            node.activations.append(activation)
    return node


def _shape(*dims: Any) -> tuple[int, ...] | None:
    if all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in dims):
        return tuple(dims)
    return None


def _tensor_shape(node: ast.expr, env: Env) -> tuple[int, ...] | None:
    """``torch.ones(d)`` / ``torch.empty(a, b, c)`` -> the shape, when every dimension evaluates."""
    if isinstance(node, ast.Call) and node.args:
        dims = [evaluate(a, env) for a in node.args]
        if len(dims) == 1 and isinstance(dims[0], tuple):
            dims = list(dims[0])
        return _shape(*dims)
    return None


# --------------------------------------------------------------------------- reading code bodies


def nodes_of(*functions: ast.AST | None) -> list[ast.AST]:
    """Every AST node under the given functions (for the pattern tables)."""
    found: list[ast.AST] = []
    for function in functions:
        if function is not None:
            found.extend(ast.walk(function))
    return found


def called_names(function: ast.AST | None) -> list[str]:
    """Plain function names called in a body, in order (``apply_rotary_pos_emb``, ``rotate_half``...)."""
    names = []
    for node in nodes_of(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in names:
            names.append(node.func.id)
    return names


def source_text(node: ast.AST | None, limit: int = 160) -> str:
    if node is None:
        return ""
    try:
        text = ast.unparse(node)
    except (ValueError, AttributeError, RecursionError):
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
