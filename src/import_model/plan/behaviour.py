"""What a model's HF modeling code *does*, read from its module tree (see :mod:`import_model.plan.modeling`).

Each detector looks at one place in the code and matches it against a pattern
table: the norm class's forward (:data:`NORM_PATTERNS`), the rotary helper the
attention forward calls (:data:`ROTARY_PATTERNS`), the attention's scaling
expression (:data:`SCALE_PATTERNS`), the embedding and logit arithmetic
(:data:`EMBED_SCALE_PATTERNS`, :data:`LOGIT_PATTERNS`), the MLP forward
(:data:`MLP_PATTERNS`). The decoder layer's forward is run symbolically to
recover the residual wiring (sequential / parallel, pre / sandwich / post norms).

Every detector returns :class:`Observation` values (a value plus the code it
was read from) and never raises: strange code yields fewer observations.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from import_model.plan.modeling import (
    ACTIVATION_FUNCTIONS,
    IDENTITY_KINDS,
    UNKNOWN,
    ClassRef,
    Env,
    ModuleNode,
    SourceTree,
    called_names,
    evaluate,
    nodes_of,
    source_text,
)


@dataclass(frozen=True)
class Observation:
    value: Any
    evidence: str


Matcher = Callable[[list[ast.AST]], bool]


# --------------------------------------------------------------------------- roles: which submodule is what

#: Attribute / class name patterns that say which submodule plays which role.
ROLE_PATTERNS: dict[str, tuple[str, str]] = {
    # role: (attribute-name regex, class-name regex)
    "attention": (r"^(self_attn|attn|attention|self_attention|mixer)$", r"Attention"),
    "mlp": (r"^(mlp|feed_forward|ffn|block_sparse_moe|moe)$", r"MLP|MoE|Moe|FeedForward|Experts|Sparse"),
    "embed": (r"^(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings)$", r"Embedding"),
    "lm_head": (r"^(\w+_)?lm_head$|^(embed_out|output)$", r"^$"),  # ELECTRA's generator_lm_head
    "q_norm": (r"^(q_norm|q_layernorm|query_layernorm|q_ln)$", r"^$"),
    "k_norm": (r"^(k_norm|k_layernorm|key_layernorm|k_ln)$", r"^$"),
}
NORM_KINDS = frozenset({"norm", "layernorm", "rmsnorm"})


@dataclass
class Roles:
    root: ModuleNode
    backbone: ModuleNode | None = None
    layer: ModuleNode | None = None
    attention: tuple[str, ModuleNode] | None = None
    mlp: tuple[str, ModuleNode] | None = None
    layer_norms: dict[str, ModuleNode] = field(default_factory=dict)
    final_norm: ModuleNode | None = None
    embed_norm: ModuleNode | None = None  # a norm the backbone applies to the embeddings before its layers
    token_type: ModuleNode | None = None  # BERT-style: a table of token types, row 0 added to every embedding
    head_transform: ModuleNode | None = None  # BERT-style: dense, activation and norm between the layers and head
    embed_projection: ModuleNode | None = None  # ELECTRA: a linear from the embedding width up to the hidden size
    embed: ModuleNode | None = None
    lm_head: ModuleNode | None = None
    q_norm: ModuleNode | None = None
    k_norm: ModuleNode | None = None


def _role_child(node: ModuleNode | None, role: str) -> tuple[str, ModuleNode] | None:
    if node is None:
        return None
    attr_re, class_re = ROLE_PATTERNS[role]
    for attr, child in node.children.items():
        if re.search(attr_re, attr):
            return attr, child
    for attr, child in node.children.items():
        if child.ref is not None and re.search(class_re, child.ref.name) and "Rotary" not in child.ref.name:
            return attr, child
    return None


def find_roles(root: ModuleNode, tree: SourceTree | None = None) -> Roles:
    """The modules that play each role; with ``tree``, the backbone's forward says which of its norms run before the
    layers (on the embeddings) and which after them (the final norm)."""
    roles = Roles(root=root)
    found = _layer_list(root)
    if found is not None:
        roles.backbone, roles.layer = found
    head = _role_child(root, "lm_head")
    roles.lm_head = head[1] if head else None
    embed = _role_child(roles.backbone, "embed")
    if embed is not None and embed[1].kind != "embedding" and "weight" not in embed[1].params:
        embed = _table_inside(embed)  # an embeddings module holding the table (ModernBERT-decoder's embeddings)
    roles.embed = embed[1] if embed else _outside_layers(root, "embed") or _vocabulary_table(roles.backbone)
    if roles.lm_head is None or roles.lm_head.kind != "linear":  # RoBERTa's lm_head module holds its decoder
        # a head module with no linear of that name inside is a transform; the head's linear sits beside it
        # (ModernBERT-decoder's lm_head.{dense,norm} with its decoder at the root)
        roles.lm_head = (_outside_layers(roles.lm_head, "lm_head") if roles.lm_head is not None else None) or \
            _outside_layers(root, "lm_head")
    roles.attention = _role_child(roles.layer, "attention")
    roles.mlp = _role_child(roles.layer, "mlp")
    if roles.layer is not None:
        roles.layer_norms = {a: n for a in roles.layer.children for n in [_layer_norm(roles.layer, a)] if n is not None}
    if roles.backbone is not None:
        roles.final_norm = next((c for c in roles.backbone.children.values() if c.kind in NORM_KINDS), None)
        if tree is not None:
            _settle_backbone_norms(tree, roles)
            if roles.final_norm is None:
                roles.final_norm = _norm_after_backbone(tree, root, roles.backbone)
    _embedding_module(root, roles)
    roles.embed_projection = _embedding_projection(root, roles)
    attention = roles.attention[1] if roles.attention else None
    q_norm, k_norm = _role_child(attention, "q_norm"), _role_child(attention, "k_norm")
    roles.q_norm = q_norm[1] if q_norm else None
    roles.k_norm = k_norm[1] if k_norm else None
    return roles


def _layer_norm(layer: ModuleNode, attr: str) -> ModuleNode | None:
    """The layer's norm ``attr``; where this layer index builds an Identity in its place (ModernBERT-decoder's
    ``attn_norm`` on layer 0), the norm the other layers build."""
    child = layer.children[attr]
    if child.kind in NORM_KINDS:
        return child
    other = layer.alternatives.get(attr)
    return other if child.kind in IDENTITY_KINDS and other is not None and other.kind in NORM_KINDS else None


def _table_inside(found: tuple[str, ModuleNode]) -> tuple[str, ModuleNode] | None:
    """The token embedding inside a module matched by its class name (an ``...Embeddings`` module that holds the
    table, its norm and dropout): the child named as a token embedding, or its one vocabulary-sized table."""
    named = _role_child(found[1], "embed")
    if named is not None and named[1].kind == "embedding":
        return named
    table = _vocabulary_table(found[1])
    return (table.path.rsplit(".", 1)[-1], table) if table is not None else None


def _vocabulary_table(backbone: ModuleNode | None) -> ModuleNode | None:
    """The backbone's embedding with one row per vocabulary entry, under a name no pattern knows (CTRL's ``w``)."""
    if backbone is None:
        return None
    vocab = backbone.env.config.get("vocab_size") if backbone.env is not None else None
    tables = [child for child in backbone.children.values() if child.kind == "embedding"]
    sized = [table for table in tables if (table.params.get("weight") or (None,))[0] == vocab]
    return sized[0] if len(sized) == 1 else tables[0] if len(tables) == 1 else None


def _outside_layers(root: ModuleNode, role: str) -> ModuleNode | None:
    """The shallowest module anywhere outside the layer list that plays ``role`` by its attribute name: BERT-style
    models keep the embeddings beside the encoder (``bert.embeddings.word_embeddings``) and the head's linear
    inside a prediction head (``cls.predictions.decoder``)."""
    attr_re = ROLE_PATTERNS[role][0] if role != "lm_head" else r"^(\w+_)?lm_head$|^(embed_out|output|decoder)$"
    queue = [root]
    while queue:
        node = queue.pop(0)
        for attr, child in node.children.items():
            if child.kind == "list":
                continue
            if re.search(attr_re, attr) and child.kind in ("embedding", "linear"):
                return child
            queue.append(child)
    return None


def _parent(root: ModuleNode, node: ModuleNode) -> ModuleNode | None:
    path = node.path.rsplit(".", 1)[0] if "." in node.path else ""
    found: ModuleNode | None = root
    for part in path.split(".") if path else []:
        found = found.children.get(part) if found is not None else None
    return found


def _embedding_module(root: ModuleNode, roles: Roles) -> None:
    """BERT-style embeddings: the module that holds the token embedding also holds a table of token types and a
    norm of the sum; BERT-style heads: the head's linear sits beside a transform (dense, activation, norm)."""
    embed = roles.embed
    holder = _parent(root, embed) if embed is not None else None
    if holder is not None and holder is not roles.backbone and holder is not root:
        if roles.embed_norm is None:
            roles.embed_norm = next((c for c in holder.children.values() if c.kind in NORM_KINDS), None)
        roles.token_type = next((c for a, c in holder.children.items() if c.kind == "embedding" and "type" in a), None)
    head = roles.lm_head
    parent = _parent(root, head) if head is not None else None
    if parent is not None:
        # the head's own module and its siblings; at the root, the siblings only (ELECTRA's generator_predictions)
        for child in (parent, *parent.children.values()) if parent is not root else tuple(parent.children.values()):
            kinds = {c.kind for c in child.children.values()}
            # the backbone itself is no transform (Gemma 4's holds a linear and norms for its per-layer inputs)
            holds_layers = roles.backbone is not None and (child is roles.backbone or
                                                           roles.backbone.path.startswith(f"{child.path}."))
            if child is not head and "linear" in kinds and kinds & NORM_KINDS and child.path != head.path and \
                    not holds_layers and not any(c is head for c in child.children.values()):
                roles.head_transform = child
                break
        else:
            kinds = {c.kind for a, c in parent.children.items() if c is not head}
            if "linear" in kinds and kinds & NORM_KINDS:
                roles.head_transform = parent  # RoBERTa's lm_head: dense and layer_norm beside the decoder


def _norm_after_backbone(tree: SourceTree, root: ModuleNode, backbone: ModuleNode) -> ModuleNode | None:
    """A norm the backbone's owner runs on what the backbone returns (RoBERTa-PreLayerNorm's model-level
    ``LayerNorm`` after its encoder): the final norm, one module up."""
    owner = _parent(root, backbone)
    found = _forward(tree, owner) if owner is not None and owner is not backbone else None
    if owner is None or found is None:
        return None
    attr = backbone.path.rsplit(".", 1)[-1]
    norms = {a: c for a, c in owner.children.items() if c.kind in NORM_KINDS}
    ran = False
    for stmt in found[0].body:
        calls = _self_calls(stmt)
        if ran and any(call in norms for call in calls):
            return norms[next(call for call in calls if call in norms)]
        ran = ran or attr in calls
    return None


def _embedding_projection(root: ModuleNode, roles: Roles) -> ModuleNode | None:
    """A linear beside the layer stack that takes the embeddings' width to a different one (ELECTRA's
    ``embeddings_project``: embeddings narrower than the layers)."""
    if roles.embed is None or roles.backbone is None:
        return None
    vocab, width = (roles.embed.params.get("weight") or (None, None))[-2:]
    owner = _parent(root, roles.backbone)
    for child in owner.children.values() if owner is not None else ():
        shape = child.params.get("weight") if child.kind == "linear" and child is not roles.lm_head else None
        if shape and len(shape) == 2 and isinstance(width, int) and shape[1] == width and shape[0] not in (width, vocab):
            return child
    return None


def _settle_backbone_norms(tree: SourceTree, roles: Roles) -> None:
    """Read the backbone's forward: a norm called before the loop over the layers normalises the embeddings, one
    called after it is the final norm (TrOCR's only backbone norm, ``layernorm_embedding``, runs before)."""
    backbone = roles.backbone
    found = _forward(tree, backbone)
    if backbone is None or found is None:
        return
    norms = {attr: child for attr, child in backbone.children.items() if child.kind in NORM_KINDS}
    lists = "|".join(re.escape(attr) for attr, child in backbone.children.items() if child.kind == "list")
    before: list[str] = []
    after: list[str] = []
    seen_loop = False
    for stmt in found[0].body:
        if isinstance(stmt, ast.For) and lists and re.search(rf"\bself\.(?:{lists})\b", source_text(stmt.iter)):
            seen_loop = True
            continue
        called = [attr for attr in _self_calls(stmt) if attr in norms]
        (after if seen_loop else before).extend(called)
    if not seen_loop:
        return
    roles.embed_norm = norms[before[0]] if before else None
    roles.final_norm = norms[after[0]] if after else None


def _self_call_nodes(node: ast.AST) -> list[ast.Call]:
    """The calls of an attribute of ``self`` under ``node`` (``self.norm(h)``), in walk order."""
    return [call for call in ast.walk(node) if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name) and call.func.value.id == "self"]


def _self_calls(stmt: ast.stmt) -> list[str]:
    """Attributes of ``self`` the statement calls, in order."""
    return [call.func.attr for call in _self_call_nodes(stmt) if isinstance(call.func, ast.Attribute)]


def _layer_list(root: ModuleNode) -> tuple[ModuleNode, ModuleNode] | None:
    """(the module that holds the decoder's layer list, one layer of it): the shallowest list of blocks at any
    nesting (``model.layers``, ``model.decoder.layers``, ``transformer.h``)."""
    queue = [child for child in root.children.values() if child.kind != "list"]
    while queue:
        node = queue.pop(0)
        for child in node.children.values():
            if child.kind == "list" and child.children.get("{i}") is not None and child.children["{i}"].children:
                return node, child.children["{i}"]
        queue.extend(c for c in node.children.values() if c.kind != "list")
    return None


# --------------------------------------------------------------------------- small AST matchers


def _call_leaf(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def calls(*names: str) -> Matcher:
    return lambda nodes: any(isinstance(n, ast.Call) and _call_leaf(n) in names for n in nodes)


def _subtracts_mean(nodes: list[ast.AST]) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Sub) and "mean" in source_text(n.right)
               for n in nodes)


def _adds_one_to_weight(nodes: list[ast.AST]) -> bool:
    def is_one(side: ast.expr) -> bool:
        return isinstance(side, ast.Constant) and side.value in (1, 1.0) and not isinstance(side.value, bool)

    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add)
               and (is_one(n.left) and "weight" in source_text(n.right) or is_one(n.right) and "weight" in source_text(n.left))
               for n in nodes)


def _slices_step_two(nodes: list[ast.AST]) -> bool:
    return any(isinstance(n, ast.Slice) and isinstance(n.step, ast.Constant) and n.step.value == 2 for n in nodes)


def _slices_halves(nodes: list[ast.AST]) -> bool:
    return any(isinstance(n, ast.Slice) and "// 2" in (source_text(n.lower) + source_text(n.upper)) for n in nodes)


def _negates_second_half(nodes: list[ast.AST]) -> bool:
    """``cat((x2, -x1))`` / ``stack((x2, -x1))``: the pair rotated the other way (NanoChat), where the usual
    helper builds ``(-x2, x1)``."""
    def negated(node: ast.AST) -> bool:
        return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)

    for node in nodes:
        if isinstance(node, ast.Call) and source_text(node.func).split(".")[-1] in ("cat", "stack", "concat") \
                and node.args and isinstance(node.args[0], (ast.Tuple, ast.List)) and len(node.args[0].elts) == 2:
            first, second = node.args[0].elts
            if negated(second) and not negated(first):
                return True
    return False


def _multiplies_branches(nodes: list[ast.AST]) -> bool:
    operand = (ast.Name, ast.Call, ast.Attribute, ast.Subscript)
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult) and isinstance(n.left, operand)
               and isinstance(n.right, operand) and (isinstance(n.left, ast.Call) or isinstance(n.right, ast.Call))
               for n in nodes)


# --------------------------------------------------------------------------- pattern tables

#: (trait, value, what the code does, matcher) over the norm class's forward and helpers; first hit per trait wins.
NORM_PATTERNS: tuple[tuple[str, Any, str, Matcher], ...] = (
    ("kind", "layernorm", "calls layer_norm", calls("layer_norm", "layernorm")),
    ("kind", "layernorm", "subtracts the mean before normalising", _subtracts_mean),
    ("kind", "rms", "divides by the root mean square", calls("rsqrt", "rms_norm")),
    ("offset", True, "scales by (1 + weight)", _adds_one_to_weight),
)
#: Built-in norm classes (nn.X) -> kind.
BUILTIN_NORMS = {"layernorm": "layernorm", "rmsnorm": "rms", "LayerNorm": "layernorm", "RMSNorm": "rms"}

#: (style, what the code does, matcher) over the rotary helper and what it calls; first hit wins.
ROTARY_PATTERNS: tuple[tuple[str, str, Matcher], ...] = (
    ("interleaved", "pairs adjacent channels (x[..., ::2] / x[..., 1::2])", _slices_step_two),
    ("interleaved", "repeat_interleave on cos/sin", calls("repeat_interleave")),
    ("interleaved", "rotates complex pairs (view_as_complex)", calls("view_as_complex", "polar")),
    ("half_split", "rotates the two halves (x[..., :d // 2], x[..., d // 2:])", _slices_halves),
    ("half_split", "splits q/k into halves with chunk", calls("chunk")),
)
#: Token mixers other than softmax attention that a decoder layer may build on some layers.
HYBRID_MIXER = re.compile(r"Conv|Mamba|SSM|DeltaNet|LinearAttention|Recurrent|Rwkv|RWKV|Lightning|Retention")

#: Calls in an attention forward that apply rotary embeddings.
ROTARY_CALL = re.compile(r"rotary|rope", re.IGNORECASE)

#: Config names in the attention's scaling expression -> how the scale is chosen; first hit wins.
SCALE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("query_pre_attn_scalar", "query_pre_attn_scalar"),
    ("attention_multiplier", "multiplier"),
    ("attn_scale", "multiplier"),
    ("head_dim", "default"),
    ("head_size", "default"),
    ("qk_head_dim", "default"),
)
SCALE_ATTRS = ("scaling", "scale", "softmax_scale", "norm_factor")

#: (kind, regex over the embedding scale expression).
EMBED_SCALE_PATTERNS: tuple[tuple[str, str], ...] = (
    # the hidden size under its own name or one the model's attribute takes it from (CTRL's d_model_size = n_embd)
    ("sqrt_hidden", r"hidden_size\s*\*\*\s*0\.5|sqrt\(.*\b(?:hidden_size|n_embd|d_model)\b"),
    ("multiplier", r"embedding_multiplier|scale_emb|emb_scale|embed_scale|embedding_scale"),
)

#: (head trait, matcher over one ``logits = ...`` statement); the softcap row consumes its divide and multiply.
LOGIT_PATTERNS: tuple[tuple[str, Callable[[ast.expr], bool]], ...] = (
    ("final_softcap", lambda e: calls("tanh")(list(ast.walk(e)))),
    ("logits_divisor", lambda e: isinstance(e, ast.BinOp) and isinstance(e.op, ast.Div)),
    ("logit_scale", lambda e: isinstance(e, ast.BinOp) and isinstance(e.op, ast.Mult)),
)

#: (value, what the code does, matcher) over the MLP forward.
MLP_PATTERNS: tuple[tuple[str, str, Matcher], ...] = (
    ("gated", "splits a fused gate_up projection", calls("chunk")),
    ("gated", "multiplies the activated gate by the up projection", _multiplies_branches),
)


# --------------------------------------------------------------------------- detectors


def _class_nodes(tree: SourceTree, ref: ClassRef | None, skip: tuple[str, ...] = ("__init__", "extra_repr")) -> list[ast.AST]:
    if ref is None:
        return []
    return nodes_of(*(method for method, _ in tree.methods(ref) if method.name not in skip))


def hybrid_mixers(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """Non-attention token mixers the decoder layer builds on some layers (even if this config builds none)."""
    layer = roles.layer
    init = tree.method(layer.ref, "__init__") if layer is not None and layer.ref is not None else None
    if init is None:
        return {}
    function, owner = init
    names = sorted({n.func.id for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                    and HYBRID_MIXER.search(n.func.id) and tree.find_class(owner.path, n.func.id) is not None})
    if not names:
        return {}
    return {"mixers": Observation(names, f"{owner.name}.__init__ builds {', '.join(names)} on some layers")}


def norm_behaviour(tree: SourceTree, node: ModuleNode | None) -> dict[str, Observation]:
    """kind (rms / layernorm), offset ((1 + w)), weight and bias presence of one norm module."""
    if node is None:
        return {}
    name = node.class_name
    found: dict[str, Observation] = {}
    builtin = BUILTIN_NORMS.get(node.kind) or BUILTIN_NORMS.get(str(node.values.get("builtin_base", "")))
    if builtin:
        torch_name = "nn.LayerNorm" if builtin == "layernorm" else "nn.RMSNorm"
        label = node.path.rsplit(".", 1)[-1] if node.ref is None else name
        found["kind"] = Observation(builtin, f"{label} is {torch_name}")
        if node.ref is None:  # a subclass (Nemotron's LayerNorm1P: weight + 1) may change how the weight applies
            found["offset"] = Observation(False, f"{label} ({torch_name}) applies its weight as is")
    for trait, value, text, matcher in NORM_PATTERNS:
        if trait not in found and matcher(_class_nodes(tree, node.ref)):
            found[trait] = Observation(value, f"{name}.forward {text}")
    found.setdefault("offset", Observation(False, f"{name}.forward multiplies by weight as is"))
    found["weight"] = Observation("weight" in node.params, f"{name} {'has' if 'weight' in node.params else 'has no'} weight")
    found["bias"] = Observation("bias" in node.params, f"{name} {'has' if 'bias' in node.params else 'has no'} bias")
    return found


def _forward(tree: SourceTree, node: ModuleNode | None) -> tuple[ast.FunctionDef, ClassRef] | None:
    return tree.method(node.ref, "forward") if node is not None and node.ref is not None else None


def rotary_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """style (half_split / interleaved / none) and whether some layers skip it (conditional)."""
    holder = roles.attention[1] if roles.attention else None
    for candidate in (holder, roles.layer):
        found = _forward(tree, candidate)
        if found is None:
            continue
        forward, owner = found
        names = [n for n in called_names(forward) if ROTARY_CALL.search(n)]
        if not names:
            continue
        helper = tree.find_function(owner.path, names[0])
        if helper is None:
            return {"style": Observation("unknown", f"{owner.name}.forward calls {names[0]}, which was not found")}
        function, path = helper
        helpers = [tree.find_function(path, n) for n in called_names(function)]
        nodes = nodes_of(function, *(h[0] for h in helpers if h))
        result = {"style": Observation("unknown", f"{names[0]} matches no rotary pattern")}
        for style, text, matcher in ROTARY_PATTERNS:
            if matcher(nodes):
                result["style"] = Observation(style, f"{names[0]} (called by {owner.name}.forward) {text}")
                break
        if _negates_second_half(nodes):
            result["direction"] = Observation("inverted", f"{names[0]} builds (x2, -x1): rotates by minus the angle")
        switch = _config_switch(forward, names[0])
        other = _rotary_style(tree, owner.path, switch[1]) if switch else None
        if switch and other:  # DeepSeek-V3: interleaved pairs under config.rope_interleave, rotate_half otherwise
            result["style_otherwise"] = Observation((switch[0], other), f"{owner.name}.forward calls {switch[1]} "
                                                    f"instead where config.{switch[0]} is false")
        guard = _guard_of(forward, names[0])
        if guard:
            result["conditional"] = Observation(True, f"{owner.name}.forward applies rotary only `if {guard}`")
        position = _qk_norm_position(forward, names[0], roles)
        if position is not None:
            result["qk_norm_position"] = Observation(position, f"{owner.name}.forward calls the QK-norm "
                                                     f"{position.replace('_', ' ')} ({names[0]})")
        return result
    if holder is not None and _forward(tree, holder) is not None:
        return {"style": Observation("none", f"{holder.class_name}.forward applies no rotary embedding")}
    return {}


def _qk_norm_position(forward: ast.FunctionDef, rotary_call: str, roles: Roles) -> str | None:
    """``before_rope`` (Qwen3) or ``after_rope`` (HunYuan): where the forward first calls the q norm."""
    if roles.q_norm is None:
        return None
    q_norm = roles.q_norm.path.rsplit(".", 1)[-1]
    lines = {"rope": [], "norm": []}
    for node in ast.walk(forward):
        if not isinstance(node, ast.Call):
            continue
        if _call_leaf(node) == rotary_call:
            lines["rope"].append(node.lineno)
        elif isinstance(node.func, ast.Attribute) and node.func.attr == q_norm:
            lines["norm"].append(node.lineno)
    if not lines["rope"] or not lines["norm"]:
        return None
    return "after_rope" if min(lines["norm"]) > min(lines["rope"]) else "before_rope"


def _rotary_style(tree: SourceTree, path: str, name: str) -> str | None:
    """The style of the rotary helper ``name`` (and what it calls), by :data:`ROTARY_PATTERNS`."""
    helper = tree.find_function(path, name)
    if helper is None:
        return None
    function, where = helper
    called = [tree.find_function(where, n) for n in called_names(function)]
    nodes = nodes_of(function, *(h[0] for h in called if h))
    return next((style for style, _, matcher in ROTARY_PATTERNS if matcher(nodes)), None)


def _config_switch(function: ast.FunctionDef, callee: str) -> tuple[str, str] | None:
    """``(config attribute, the other rotary helper)`` where ``callee`` runs under ``if ...config.<attribute>:`` and
    an ``else`` calls another rotary helper."""
    for node in ast.walk(function):
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Attribute)
                and isinstance(node.test.value, ast.Attribute) and node.test.value.attr == "config"):
            continue
        inside = [n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Call)]
        if not any(_call_leaf(n) == callee for n in inside):
            continue
        others = [_call_leaf(n) for stmt in node.orelse for n in ast.walk(stmt) if isinstance(n, ast.Call)
                  and ROTARY_CALL.search(_call_leaf(n)) and _call_leaf(n) != callee]
        if others:
            return node.test.attr, others[0]
    return None


def _guard_of(function: ast.FunctionDef, callee: str) -> str | None:
    for node in ast.walk(function):
        if isinstance(node, ast.If) and any(isinstance(n, ast.Call) and _call_leaf(n) == callee
                                            for stmt in node.body for n in ast.walk(stmt)):
            return source_text(node.test, 80)
    return None


def _expanded_names(node: ModuleNode, expr: ast.expr | None, depth: int = 0) -> set[str]:
    """Attribute and name identifiers in ``expr``, following ``self.x`` to its own assignment once."""
    names: set[str] = set()
    for sub in ast.walk(expr) if expr is not None else []:
        if isinstance(sub, ast.Attribute):
            names.add(sub.attr)
            if depth == 0 and isinstance(sub.value, ast.Name) and sub.value.id == "self" and sub.attr in node.exprs:
                names |= _expanded_names(node, node.exprs[sub.attr], 1)
        elif isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            names.add(sub.value)
    return names


#: Names that, anywhere in the method that computes q·kᵀ, mean the scores are scaled.
_SCALE_WORDS = re.compile(r"scal|sqrt|norm_factor|head_dim|head_size|inv_freq|softmax_scale|temperature", re.I)


def _unscaled_scores(tree: SourceTree, classes: list[ClassRef]) -> str | None:
    """``Class.method`` of the attention's classes (its own and its submodules') that multiplies queries by
    transposed keys with no division and no scale-like name in the whole method (GPT-Neo); None when every such
    method scales."""
    for ref in classes:
        for method, owner in tree.methods(ref):
            products = [n for n in ast.walk(method) if isinstance(n, ast.Call) and _call_leaf(n) == "matmul"
                        and any(isinstance(a, ast.Call) and _call_leaf(a) == "transpose" for a in n.args)]
            if not products:
                continue
            text = source_text(method, 100000)
            divides = any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) for n in ast.walk(method))
            if divides or _SCALE_WORDS.search(text):
                return None
            return f"{owner.name}.{method.name}"
    return None


def _flags_sqrt_scale(tree: SourceTree, node: ModuleNode, attr: str) -> bool:
    """A method of the attention guards a division by a square root with ``if self.<attr>:``."""
    for method, _ in tree.methods(node.ref) if node.ref is not None else []:
        for stmt in ast.walk(method):
            if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Attribute) and stmt.test.attr == attr \
                    and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and "sqrt" in source_text(n)
                            for sub in stmt.body for n in ast.walk(sub)):
                return True
    return False


def _scale_by_layer(tree: SourceTree, node: ModuleNode, attr: str) -> Observation | None:
    """``if self.<flag>: self.<scale> /= ... layer_idx ...`` in the attention's ``__init__`` with the flag on for this
    config: each layer's scale divided by its depth (GPT-2's ``scale_attn_by_inverse_layer_idx``)."""
    found = tree.method(node.ref, "__init__") if node.ref is not None else None
    for stmt in ast.walk(found[0]) if found else []:
        if not (isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Attribute)
                and isinstance(stmt.test.value, ast.Name) and stmt.test.value.id == "self"):
            continue
        for sub in stmt.body:
            if isinstance(sub, ast.AugAssign) and isinstance(sub.op, ast.Div) \
                    and isinstance(sub.target, ast.Attribute) and sub.target.attr == attr \
                    and "layer_idx" in source_text(sub.value) and node.values.get(stmt.test.attr) is True:
                return Observation(True, f"{node.class_name}.__init__: if self.{stmt.test.attr}: "
                                         f"{source_text(sub, 80)}")
    return None


def attention_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """scale kind and value, logit softcap, sliding-window support, where head_dim comes from."""
    if roles.attention is None:
        return {}
    node = roles.attention[1]
    name = node.class_name
    found: dict[str, Observation] = {}
    attr = next((a for a in SCALE_ATTRS if a in node.exprs), None)
    classes = [n.ref for n in (node, *node.children.values()) if n.ref is not None]  # GPT-Neo nests its attention
    unscaled = _unscaled_scores(tree, classes) if attr is None else None
    if unscaled is not None:
        found["scale"] = Observation("none", f"{unscaled} multiplies q by kᵀ and scales nothing")
    elif attr is None:
        found["scale"] = Observation("default", f"{name} sets no scale: the attention default 1/sqrt(head_dim)")
    else:
        expr = node.exprs[attr]
        names = _expanded_names(node, expr)
        kind = next((k for key, k in SCALE_PATTERNS if key in names), "custom")
        found["scale"] = Observation(kind, f"{name}.{attr} = {source_text(expr, 90)}")
        value = node.values.get(attr, UNKNOWN)
        if isinstance(value, bool) and kind == "custom" and _flags_sqrt_scale(tree, node, attr):
            # GPT-1: ``if self.scale: w = w / math.sqrt(v.size(-1))``, the flag on or off for this config
            found["scale"] = Observation("default" if value else "none",
                                         f"{name}.{attr} = {value}: the flag that divides the scores by sqrt(head_dim)")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found["scale_value"] = Observation(_number(value), f"{name}.{attr} evaluated with the config")
        by_layer = _scale_by_layer(tree, node, attr)
        if by_layer is not None:
            found["scale_by_layer"] = by_layer
    head_dim = node.exprs.get("head_dim")
    if head_dim is not None:
        text = source_text(head_dim, 200)
        reads = bool(re.search(r"config\.head_dim|['\"]head_dim['\"]", text))
        found["head_dim_source"] = Observation("config" if reads else "derived", f"{name}.head_dim = {source_text(head_dim, 90)}")
    found.update(_softcap(tree, node))
    differential = _differential_lambdas(tree, node)
    if differential is not None:
        found["differential"] = differential
    text = " ".join(source_text(m, 100000) for ref in classes for m, _ in tree.methods(ref))
    if roles.layer is not None and roles.layer.ref is not None:
        text += " ".join(source_text(m, 100000) for m, _ in tree.methods(roles.layer.ref))
    if "mscale_all_dim" in text:  # DeepSeek-V3's latent attention squares YaRN's mscale into its scale; V2's does not
        found["scale_mscale"] = Observation(True, f"{name} multiplies its scale by mscale squared from the rope "
                                                  "parameters' mscale_all_dim")
    if "window_size" in text and "local" in text and "sliding_window" not in text:  # GPT-Neo
        found["sliding"] = Observation("per_layer", f"{name} masks its local layers to config.window_size")
    elif "sliding_window" in text:
        per_layer = "layer_type" in text or "is_sliding" in text
        found["sliding"] = Observation("per_layer" if per_layer else "config",
                                       f"{name} reads sliding_window" + (" per layer type" if per_layer else ""))
    else:
        found["sliding"] = Observation("never", f"{name} never reads sliding_window")
    return found


#: The slopes' largest bias the standard ALiBi schedule uses (2 ** -(8 i / n) for head i of n).
ALIBI_MAX_BIAS = 8


def score_bias(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """A bias the layers add to the attention scores: ALiBi, when the backbone builds it for this config (a call whose
    name says ``alibi``, not switched off by its guard). ``alibi_scaled`` when the backbone divides it by the scale's
    square root (Falcon adds it before scaling), ``alibi_max_bias`` when the builder is handed another maximum."""
    backbone = roles.backbone
    if backbone is None or backbone.ref is None:
        return {}
    for method, owner in tree.methods(backbone.ref):
        for call in (n for n in ast.walk(method) if isinstance(n, ast.Call) and "alibi" in _call_leaf(n).lower()):
            if not _guard_allows(method, call, backbone):
                continue
            where = f"{owner.name}.{method.name} calls {_call_leaf(call)}"
            found = {"kind": Observation("alibi", where)}
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and "alibi" in source_text(n.left).lower()
                   for n in ast.walk(method)):
                found["kind"] = Observation("alibi_scaled", f"{where} and divides it by the scores' scale")
            given = [kw.value for kw in call.keywords if kw.arg == "alibi_bias_max"]
            if given:
                found["max_bias"] = Observation(evaluate(given[0], backbone.env) if backbone.env else UNKNOWN,
                                                f"{where} with alibi_bias_max={source_text(given[0], 40)}")
            return found
    return {}


def _guard_allows(method: ast.FunctionDef, call: ast.Call, node: ModuleNode) -> bool:
    """False when ``call`` sits in the body of an ``if`` whose test is false for this config (Falcon's
    ``if self.use_alibi:`` with ``alibi: false``)."""
    for branch in ast.walk(method):
        if isinstance(branch, ast.If) and any(call is n for stmt in branch.body for n in ast.walk(stmt)):
            test = evaluate(branch.test, node.env) if node.env else UNKNOWN
            if test is not UNKNOWN and not test:
                return False
    return True


def _softcap(tree: SourceTree, node: ModuleNode) -> dict[str, Observation]:
    found = _forward(tree, node)
    if found is None:
        return {}
    forward, owner = found
    for call in (n for n in ast.walk(forward) if isinstance(n, ast.Call)):
        for kw in call.keywords:
            if kw.arg == "softcap":
                value = _value_in(node, kw.value)
                return {"softcap": Observation(value if _is_real(value) else None,
                                               f"{owner.name}.forward passes softcap={source_text(kw.value, 60)}")}
    return {}


def _own_parameter(node: ModuleNode, expr: ast.expr) -> str | None:
    """``self.<name>`` where ``<name>`` is a parameter the module holds itself (not a submodule's)."""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self" \
            and expr.attr in node.params:
        return expr.attr
    return None


def _exp_of_dot(call: ast.AST, node: ModuleNode) -> tuple[str, str] | None:
    """``exp(sum(self.a * self.b))``: the pair of the module's own vectors whose dot product is exponentiated."""
    if not (isinstance(call, ast.Call) and _call_leaf(call) == "exp" and call.args):
        return None
    inner = call.args[0]
    if not (isinstance(inner, ast.Call) and _call_leaf(inner) == "sum" and inner.args):
        return None
    product = inner.args[0]
    if not (isinstance(product, ast.BinOp) and isinstance(product.op, ast.Mult)):
        return None
    left, right = _own_parameter(node, product.left), _own_parameter(node, product.right)
    return (left, right) if left and right else None


def _differential_lambdas(tree: SourceTree, node: ModuleNode) -> Observation | None:
    """Differential attention (DiffLlama): the forward exponentiates the dot products of two pairs of the module's
    own vectors, ``exp(q1 . k1) - exp(q2 . k2)``, the lambda that weighs one softmax map against the other. The
    value is the four parameter names, the pair read first (the positive one) first."""
    found = _forward(tree, node)
    if found is None:
        return None
    forward, owner = found
    pairs = sorted(((call.lineno, pair) for call in ast.walk(forward) if (pair := _exp_of_dot(call, node))),
                   key=lambda item: item[0])
    if len(pairs) != 2:
        return None
    (q1, k1), (q2, k2) = pairs[0][1], pairs[1][1]
    return Observation((q1, k1, q2, k2), f"{owner.name}.forward: lambda = exp(sum(self.{q1} * self.{k1})) - "
                                         f"exp(sum(self.{q2} * self.{k2})) + lambda_init, two softmax maps weighed")


def _value_in(node: ModuleNode, expr: ast.expr) -> Any:
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
        return node.values.get(expr.attr, UNKNOWN)
    return evaluate(expr, node.env) if node.env is not None else UNKNOWN


def _is_real(value: Any) -> bool:
    return _number(value) is not None


def _number(value: Any) -> float | None:
    """A finite float, or None (also for a hostile integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


#: (router scoring, matcher) over the MoE block's and its router's forward; first hit wins.
ROUTER_PATTERNS: tuple[tuple[str, Matcher], ...] = (
    ("sigmoid", calls("sigmoid")),
    ("softmax", calls("softmax")),
)
_MOE_CLASS = re.compile(r"moe|sparse|expert", re.IGNORECASE)
_EXPERTS_CLASS = re.compile(r"Experts?$|MLP$|FeedForward$")
_ROUTER_ATTR = re.compile(r"^(gate|router)$")


def _routing_methods(tree: SourceTree, holder: ModuleNode | None) -> list[tuple[ast.FunctionDef, ClassRef]]:
    """The methods of a router or MoE block that may score experts (everything but ``__init__``)."""
    if holder is None or holder.ref is None:
        return []
    return [(m, owner) for m, owner in tree.methods(holder.ref) if m.name != "__init__"]


def _divides_by_sum(node: ast.AST, sums: set[str]) -> bool:
    """A division by a sum written in place, or by a local name assigned one (dots.llm1's ``denominator``)."""
    if isinstance(node, (ast.AugAssign, ast.BinOp)) and isinstance(node.op, ast.Div):
        divisor = node.value if isinstance(node, ast.AugAssign) else node.right
        return "sum(" in source_text(divisor, 200) or (isinstance(divisor, ast.Name) and divisor.id in sums)
    return False


def _top_k_values(method: ast.FunctionDef) -> set[str]:
    """Local names assigned the values of a top-k (``values, indices = logits.topk(k)``)."""
    names = set()
    for stmt in ast.walk(method):
        if isinstance(stmt, ast.Assign) and "topk(" in source_text(stmt.value, 200):
            target = stmt.targets[0]
            first = target.elts[0] if isinstance(target, ast.Tuple) and target.elts else target
            if isinstance(first, ast.Name):
                names.add(first.id)
    return names


def _local_sums(method: ast.FunctionDef) -> set[str]:
    """Local names the method assigns a sum to."""
    return {t.id for stmt in ast.walk(method) if isinstance(stmt, ast.Assign) and "sum(" in source_text(stmt.value, 200)
            for t in stmt.targets if isinstance(t, ast.Name)}


def _routing_arithmetic(method: ast.FunctionDef, owner: ClassRef) -> dict[str, Observation]:
    """What the scoring method does to the top-k weights: renormalised (always, or under a config switch) and
    multiplied by a routed scaling factor; the config attribute behind each, by its ``self.<name>``."""
    found: dict[str, Observation] = {}
    guarded: dict[int, ast.If] = {}
    for stmt in ast.walk(method):
        if isinstance(stmt, ast.If):
            for inner in stmt.body:
                for sub in ast.walk(inner):
                    guarded[id(sub)] = stmt
    sums = _local_sums(method)
    top_k = _top_k_values(method)
    for sub in ast.walk(method):
        if isinstance(sub, ast.Call) and source_text(sub.func, 60).rsplit(".", 1)[-1] == "softmax" and sub.args and \
                isinstance(sub.args[0], ast.Name) and sub.args[0].id in top_k and "renormalise" not in found:
            # a softmax over the top-k logits: the top-k of the full softmax, divided by their sum (GraniteMoE)
            found["renormalise"] = Observation(("always", None), f"{owner.name}.{method.name}: "
                                                                 f"{source_text(sub, 90)} over the top-k logits")
        if _divides_by_sum(sub, sums) and "renormalise" not in found:
            condition = guarded.get(id(sub))
            where = f"{owner.name}.{method.name}: {source_text(sub, 90)}"
            if condition is not None:
                switch = re.search(r"self\.(\w+)", source_text(condition.test))
                found["renormalise"] = Observation(("config", switch.group(1) if switch else "?"),
                                                   f"{where}, under `if {source_text(condition.test, 60)}`")
            else:
                found["renormalise"] = Observation(("always", None), where)
        if isinstance(sub, ast.Attribute) and sub.attr == "n_group" and "grouped" not in found:
            found["grouped"] = Observation("n_group", f"{owner.name}.{method.name} limits the choice to the best "
                                                      "n_group groups of experts")
        if isinstance(sub, (ast.BinOp, ast.AugAssign)) and isinstance(sub.op, ast.Mult):
            text = source_text(sub, 200)
            scale = re.search(r"self\.(\w*scal\w*)", text)
            if scale and "routed_scaling" not in found:
                found["routed_scaling"] = Observation(scale.group(1), f"{owner.name}.{method.name}: {text[:90]}")
    return found


def _expert_layers(tree: SourceTree, roles: Roles) -> Observation | None:
    """The config attributes the decoder layer's ``__init__`` tests to choose between the MoE block and a dense MLP
    (``mlp_only_layers``, ``decoder_sparse_step``, ``first_k_dense_replace``, ...): the names as the code reads them."""
    if roles.layer is None or roles.layer.ref is None or roles.mlp is None:
        return None
    found = tree.method(roles.layer.ref, "__init__")
    if found is None:
        return None
    init, owner = found
    attr = roles.mlp[0]
    for node in ast.walk(init):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.IfExp) and \
                any(isinstance(t, ast.Attribute) and t.attr == attr for t in node.targets):
            node = node.value  # ``self.mlp = MoE(config) if <test> else MLP(config)`` (EXAONE-MoE)
        elif not isinstance(node, ast.If):
            continue
        if isinstance(node, ast.IfExp):
            names = sorted({n.attr for n in ast.walk(node.test) if isinstance(n, ast.Attribute)
                            and isinstance(n.value, ast.Name) and n.value.id == "config"})
            return Observation(list(names), f"{owner.name}.__init__ builds self.{attr} by "
                                             f"`... if {source_text(node.test, 90)} else ...`")
        assigns = any(isinstance(t, ast.Attribute) and t.attr == attr for stmt in node.body
                      for sub in ast.walk(stmt) if isinstance(sub, ast.Assign) for t in sub.targets)
        if assigns:
            names = sorted({n.attr for n in ast.walk(node.test) if isinstance(n, ast.Attribute)
                            and isinstance(n.value, ast.Name) and n.value.id == "config"})
            return Observation(list(names), f"{owner.name}.__init__ builds self.{attr} under "
                                             f"`if {source_text(node.test, 90)}`")
    return Observation([], f"{owner.name}.__init__ builds self.{attr} the same in every layer")


def _is_moe_block(node: ModuleNode) -> bool:
    """A block that routes: it holds a router (``gate`` / ``router``) and experts, or is named as a mixture."""
    experts = any("expert" in a and "shared" not in a for a in list(node.children) + list(node.params))
    return any(_ROUTER_ATTR.match(a) for a in node.children) and (experts or bool(_MOE_CLASS.search(node.class_name)))


def moe_block(roles: Roles) -> ModuleNode | None:
    """The layer's MoE block: its MLP, or what the layer builds there in the branch this layer index did not take
    (a dense first layer under ``first_k_dense_replace``)."""
    if roles.mlp is None:
        return None
    attr, node = roles.mlp
    if _is_moe_block(node):
        return node
    other = roles.layer.alternatives.get(attr) if roles.layer is not None else None
    return other if other is not None and _is_moe_block(other) else None


def _norm_before_output(tree: SourceTree, node: ModuleNode, skip: tuple[ModuleNode | None, ...]) -> str | None:
    """A norm child of ``node`` its forward applies to what its last projection reads, after everything else it
    computes (BitNet's ``attn_sub_norm`` between the attention and ``o_proj``, ``ffn_sub_norm`` on the input of
    ``down_proj``); not a norm of the queries, keys or values."""
    norms = {a for a, c in node.children.items() if c.kind in NORM_KINDS and not any(c is k for k in skip)}
    linears = {a for a, c in node.children.items() if c.kind == "linear"}
    found = _forward(tree, node) if norms and linears else None
    if found is None:
        return None
    calls = [(call.lineno, call.func.attr, call) for call in _self_call_nodes(found[0])]
    last = max(((line, attr, call) for line, attr, call in calls if attr in linears), default=None,
               key=lambda item: item[0])
    if last is None:
        return None
    # the attention itself: after it, only the output projection is left (Gemma 3n's v_norm comes before it)
    mixed = [call.lineno for call in ast.walk(found[0]) if isinstance(call, ast.Call)
             and re.search(r"attention|softmax|sdpa|scaled_dot_product", source_text(call.func, 200), re.I)]
    read_by_last = {id(n) for n in ast.walk(last[2])}
    for line, attr, call in calls:
        if attr in norms and (id(call) in read_by_last or (mixed and max(mixed) < line <= last[0])):
            return attr
    return None


#: The port's name for each projection, by the name its output is assigned to in the attention's forward.
_PROJECTION_ROLES: tuple[tuple[str, str], ...] = (
    ("q_proj", r"^(?:q|query)(?:_states|_layer)?$"), ("k_proj", r"^(?:k|key)(?:_states|_layer)?$"),
    ("v_proj", r"^(?:v|value)(?:_states|_layer)?$"),
)


def attention_projections(tree: SourceTree, roles: Roles) -> dict[str, str]:
    """The port's projection name -> the attention's own attribute, read from its forward where it names them
    otherwise (CTRL's ``q = self.Wq(q)``, ..., ``output = self.dense(...)``): each of q, k and v is the linear whose
    output is assigned to that name, the output projection the linear called last. Empty unless all four are
    four distinct linears."""
    if roles.attention is None:
        return {}
    node = roles.attention[1]
    linears = {attr for attr, child in node.children.items() if child.kind == "linear"}
    found = _forward(tree, node) if len(linears) == 4 else None
    if found is None:
        return {}
    named: dict[str, str] = {}
    for stmt in ast.walk(found[0]):
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            continue
        role = next((r for r, pattern in _PROJECTION_ROLES if re.match(pattern, stmt.targets[0].id)), None)
        for call in _self_call_nodes(stmt.value) if role else []:
            if call.func.attr in linears and role not in named:  # type: ignore[attr-defined]
                named[role] = call.func.attr  # type: ignore[attr-defined]
    calls = [call.func.attr for call in sorted(_self_call_nodes(found[0]), key=lambda c: (c.lineno, c.col_offset))
             if call.func.attr in linears]  # type: ignore[attr-defined]
    if len(named) == 3 and calls and calls[-1] not in named.values():
        named["o_proj"] = calls[-1]
    return named if len(set(named.values())) == 4 else {}


def projection_home(roles: Roles, role: str) -> tuple[str, tuple[str, ModuleNode] | None]:
    """Where a projection read by :func:`projection_behaviour` sits: the port's module name for it (``mlp`` or
    ``self_attn``) and the model's own (attribute, module) that holds it."""
    mlp_roles = ("up_proj", "down_proj", "gate_up_proj", "up_gate_proj")
    return ("mlp", roles.mlp) if role in mlp_roles else ("self_attn", roles.attention)


def _chunk_pair(stmt: ast.stmt, linears: set[str]) -> tuple[str, str, str] | None:
    """``a, b = self.<linear>(x).chunk(2, ...)`` -> (linear, a, b)."""
    if not (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Tuple)
            and len(stmt.targets[0].elts) == 2 and all(isinstance(e, ast.Name) for e in stmt.targets[0].elts)):
        return None
    value = stmt.value
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "chunk"):
        return None
    inner = [call.func.attr for call in _self_call_nodes(value.func.value)  # type: ignore[attr-defined]
             if call.func.attr in linears]  # type: ignore[attr-defined]
    first, second = (e.id for e in stmt.targets[0].elts)  # type: ignore[attr-defined]
    return (inner[0], first, second) if len(inner) == 1 else None


def _activated(function: ast.FunctionDef, names: tuple[str, str], linears: set[str]) -> str | None:
    """Which of ``names`` goes through a call that is not a linear (the activation) inside a product."""
    for node in ast.walk(function):
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult)):
            continue
        for side in (node.left, node.right):
            if isinstance(side, ast.Call) and side.args and isinstance(side.args[0], ast.Name) \
                    and side.args[0].id in names and _call_leaf(side) not in linears:
                return side.args[0].id
    return None


def chunked_mlp_projections(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """A gated MLP of two linears whose input one is cut in two halves by ``chunk`` (ModernBERT-decoder's ``Wi``):
    ``gate_up_proj`` when the first half is the activated one, ``up_gate_proj`` when the second is, and
    ``down_proj`` for the other linear; empty when the code says otherwise or already uses those names."""
    node = roles.mlp[1] if roles.mlp is not None else None
    linears = {attr for attr, child in node.children.items() if child.kind == "linear"} if node is not None else set()
    found = _forward(tree, node) if len(linears) == 2 else None
    if node is None or found is None:
        return {}
    pair = next((p for stmt in ast.walk(found[0]) if isinstance(stmt, ast.stmt)
                 for p in [_chunk_pair(stmt, linears)] if p is not None), None)
    activated = _activated(found[0], pair[1:], linears) if pair is not None else None
    if pair is None or activated is None:
        return {}
    fused, first, _ = pair
    role = "gate_up_proj" if activated == first else "up_gate_proj"
    (down,) = linears - {fused}
    where = f"{node.class_name}.forward"
    seen = {role: Observation(fused, f"{where}: self.{fused}(x).chunk(2), {activated} the activated half"),
            "down_proj": Observation(down, f"{where}: self.{down} reads the gated product")}
    return {r: o for r, o in seen.items() if o.value != r}


def projection_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """The attention's projections where they go by other names (role -> its attribute), and a Sequential MLP's
    first and last linears (``up_proj`` / ``down_proj`` -> their positions)."""
    found = {role: Observation(attr, f"{roles.attention[1].class_name}.forward: {role[0]} from self.{attr}"
                                     if role != "o_proj" else
                                     f"{roles.attention[1].class_name}.forward: self.{attr} called last")
             for role, attr in attention_projections(tree, roles).items()
             if attr != role and roles.attention is not None}
    mlp = roles.mlp[1] if roles.mlp is not None else None
    found.update(chunked_mlp_projections(tree, roles))
    if mlp is not None and mlp.kind == "sequential":
        linears = [attr for attr, child in mlp.children.items() if child.kind == "linear"]
        if len(linears) == 2:
            found["up_proj"] = Observation(linears[0], f"{roles.mlp[0]}.{linears[0]}: the Sequential's first linear")
            found["down_proj"] = Observation(linears[1], f"{roles.mlp[0]}.{linears[1]}: the Sequential's last linear")
    return found


def sublayer_output_norms(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """``attention``: the norm on the attention's output before its output projection; ``mlp``: the norm on what
    the MLP's last projection reads (BitNet's sub-norms)."""
    found: dict[str, Observation] = {}
    if roles.attention is not None:
        name = _norm_before_output(tree, roles.attention[1], (roles.q_norm, roles.k_norm))
        if name is not None:
            found["attention"] = Observation(name, f"{roles.attention[1].class_name} norms the attention's output "
                                                   f"({name}) before its output projection")
    if roles.mlp is not None and moe_block(roles) is None:
        name = _norm_before_output(tree, roles.mlp[1], ())
        if name is not None:
            found["mlp"] = Observation(name, f"{roles.mlp[1].class_name} norms the input of its last projection "
                                             f"({name})")
    return found


def mlp_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """kind (gated / plain) and activation of the MLP; of the experts and the router for an MoE block."""
    if roles.mlp is None:
        return {}
    node = roles.mlp[1]
    found: dict[str, Observation] = {}
    expert = node
    moe = moe_block(roles)
    if moe is not None:
        where = "is" if moe is node else "is, in the layers that route,"
        found["moe_class"] = Observation(moe.class_name, f"the decoder layer's MLP {where} {moe.class_name}")
        if moe is node:
            expert = next((c for a, c in node.children.items() if a != "shared_expert" and c.ref is not None
                           and _EXPERTS_CLASS.search(c.ref.name)), node)
        router = next((c for a, c in moe.children.items() if _ROUTER_ATTR.match(a)), None)
        for holder in (router, moe):  # the router's own code first: the block may gate a shared expert
            for method, owner in _routing_methods(tree, holder):
                nodes = nodes_of(method)
                scoring = next((value for value, matcher in ROUTER_PATTERNS if matcher(nodes)), None)
                if scoring:
                    found["router"] = Observation(scoring, f"{owner.name}.{method.name} scores experts with {scoring}")
                    found.update(_routing_arithmetic(method, owner))
                    break
            if "router" in found:
                break
        placement = _expert_layers(tree, roles)
        if placement is not None:
            found["expert_layers"] = placement
    # experts kept as bare weight banks (GraniteMoE's ParallelExperts) leave the activation and the gate product to
    # the MoE block's own forward
    holders = [expert] + ([node] if expert is not node else [])
    owner_of_activation = next((h for h in holders if h.activations), None)
    if owner_of_activation is not None:
        found["activation"] = Observation(owner_of_activation.activations[0], f"{owner_of_activation.class_name} "
                                          f"uses activation {owner_of_activation.activations[0]!r}")
    elif written := _written_activation(tree, holders):
        found["activation"] = written
    for holder in holders:
        linears = [attr for attr, child in holder.children.items() if child.kind == "linear"]
        if holder.kind == "sequential" and len(linears) == 2:  # CTRL: Linear, activation, Linear in a row
            found["kind"] = Observation("plain", f"{holder.path.rsplit('.', 1)[-1]} is nn.Sequential(Linear, "
                                                 f"{', '.join(holder.activations) or 'no activation'}, Linear)")
            break
        forward = _forward(tree, holder)
        if forward is None:
            continue
        nodes = nodes_of(forward[0])
        hit = next(((v, t) for v, t, m in MLP_PATTERNS if m(nodes)), None)
        value, text = hit if hit else ("plain", "applies up, activation, down with no gate product")
        found["kind"] = Observation(value, f"{forward[1].name}.forward {text}")
        if hit:
            break
    return found


#: Modules whose functions an MLP's forward may call as its activation (``F.silu``, ``torch.tanh``).
_FUNCTIONAL_MODULES = frozenset({"F", "nn.functional", "torch.nn.functional", "torch"})
#: (activation, test over the AST nodes of a module's own activation code): a formula written out by hand.
WRITTEN_ACTIVATIONS: tuple[tuple[str, Matcher], ...] = (
    # BLOOM's BloomGelu: x * 0.5 * (1 + tanh(0.79788456 * x * (1 + 0.044715 * x * x)))
    ("gelu_tanh", lambda nodes: calls("tanh")(nodes) and any(isinstance(n, ast.Constant) and n.value == 0.044715
                                                            for n in nodes)),
    ("gelu", calls("erf")),  # x * 0.5 * (1 + erf(x / sqrt(2)))
)


def _written_activation(tree: SourceTree, holders: list[ModuleNode]) -> Observation | None:
    """The activation of an MLP that calls it as a function in its forward (LFM2's ``F.silu(self.w1(x))``), or
    whose activation is a weightless module of the family's own (BLOOM's ``BloomGelu``), read from the formula its
    code computes: its forward, and the functions and ``Function.apply`` forwards it calls in its own file (two
    calls deep)."""
    for holder in holders:
        found = _forward(tree, holder)
        called = next((_call_leaf(n) for n in nodes_of(found[0]) if isinstance(n, ast.Call)
                       and source_text(n.func, 60).rsplit(".", 1)[0] in _FUNCTIONAL_MODULES
                       and _call_leaf(n) in ACTIVATION_FUNCTIONS), None) if found else None
        if called == "relu" and _squares_relu(nodes_of(found[0])):  # RWKV's torch.square(torch.relu(key))
            return Observation("relu2", f"{holder.class_name}.forward squares relu")
        if called:
            return Observation(ACTIVATION_FUNCTIONS[called], f"{holder.class_name}.forward calls {called}")
    for holder in holders:
        for attr, child in holder.children.items():
            if child.ref is None or child.params or child.children:
                continue
            found = _forward(tree, child)
            nodes = _reached_code(tree, child.ref.path, found[0]) if found else []
            value = next((v for v, matches in WRITTEN_ACTIVATIONS if matches(nodes)), None)
            if value:
                return Observation(value, f"{holder.class_name}.{attr} is {child.class_name}, whose code computes "
                                          f"{value}")
    return None


def _squares_relu(nodes: list[ast.AST]) -> bool:
    """``square(relu(x))`` or ``relu(x) ** 2``: squared ReLU."""
    def is_relu(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and _call_leaf(node) == "relu"

    return any((isinstance(n, ast.Call) and _call_leaf(n) == "square" and n.args and is_relu(n.args[0]))
               or (isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) and is_relu(n.left)
                   and isinstance(n.right, ast.Constant) and n.right.value == 2) for n in nodes)


def _reached_code(tree: SourceTree, path: Any, function: ast.FunctionDef, depth: int = 0) -> list[ast.AST]:
    """``function``'s nodes and those of the same file's functions (or ``Class.apply``'s ``forward``) it calls."""
    nodes = nodes_of(function)
    if depth >= 2:
        return nodes
    for call in [n for n in nodes if isinstance(n, ast.Call)]:
        func = call.func
        if isinstance(func, ast.Name):
            found = tree.find_function(path, func.id)
            if found is not None:
                nodes.extend(_reached_code(tree, found[1], found[0], depth + 1))
        elif isinstance(func, ast.Attribute) and func.attr == "apply" and isinstance(func.value, ast.Name):
            ref = tree.find_class(path, func.value.id)
            method = tree.method(ref, "forward") if ref is not None else None
            if method is not None:
                nodes.extend(_reached_code(tree, ref.path, method[0], depth + 1))
    return nodes


def side_tables(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """Tables the embeddings module concatenates to the token embedding before a linear maps the whole back to
    the hidden size (RoCBert's shape and pronunciation tables, indexed by ids text does not carry):
    ``tables``: ((attribute, rows config key, width config key), ...) in concatenation order; ``input_map``: the
    linear's attribute."""
    holder = _parent(roles.root, roles.embed) if roles.embed is not None else None
    forward = _forward(tree, holder) if holder is not None and holder is not roles.backbone else None
    if forward is None:
        return {}
    tables = {attr: child for attr, child in holder.children.items()  # type: ignore[union-attr]
              if child.kind == "embedding" and child is not roles.embed}
    linears = {attr for attr, child in holder.children.items() if child.kind == "linear"}  # type: ignore[union-attr]
    produced: dict[str, str] = {}  # local name -> the table whose lookup it holds
    concatenated: list[str] = []
    joined: set[str] = set()  # local names holding a concatenation
    linear = None
    for node in sorted((n for n in ast.walk(forward[0]) if isinstance(n, ast.Assign) and len(n.targets) == 1
                        and isinstance(n.targets[0], ast.Name)), key=lambda n: (n.lineno, n.col_offset)):
        target, value = node.targets[0].id, node.value  # type: ignore[attr-defined]
        called = _self_calls(ast.Expr(value))
        if called and called[0] in tables:
            produced[target] = called[0]
        elif isinstance(value, ast.Call) and source_text(value.func).endswith("cat") and value.args:
            joined.add(target)
            concatenated += [produced[n.id] for n in ast.walk(value.args[0]) if isinstance(n, ast.Name)
                             and n.id in produced and produced[n.id] not in concatenated]
        elif called and called[0] in linears and linear is None and isinstance(value, ast.Call) and \
                any(isinstance(a, ast.Name) and a.id in joined for a in value.args):
            linear = called[0]  # the linear that reads the concatenation
    keys = [(attr, *(_config_attr(arg) for arg in (tables[attr].call.args[:2] if tables[attr].call else [])))
            for attr in concatenated]
    if not concatenated or linear is None or not all(len(k) == 3 and all(k) for k in keys):
        return {}
    where = f"{holder.class_name}.forward concatenates {', '.join(concatenated)} to the token embedding, " \
            f"then {linear} maps them to the hidden size"  # type: ignore[union-attr]
    return {"tables": Observation(tuple(keys), where), "input_map": Observation(linear, where)}


def _config_attr(node: ast.expr) -> str | None:
    """``config.shape_vocab_size`` -> ``shape_vocab_size``."""
    return node.attr if isinstance(node, ast.Attribute) and source_text(node.value).endswith("config") else None


def embedding_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """A scale on the token embeddings: sqrt(hidden) (Gemma) or a configured multiplier (Granite)."""
    backbone = roles.backbone
    if backbone is None or backbone.env is None:
        return {}
    candidates: list[tuple[ast.expr, Env, str]] = []
    if roles.embed is not None and roles.embed.call is not None:
        for kw in roles.embed.call.keywords:
            candidates.append((kw.value, backbone.env, f"{roles.embed.class_name}({kw.arg}={source_text(kw.value, 60)})"))
    forward = _forward(tree, backbone)
    if forward is not None:
        local = backbone.env.child(dict(backbone.env.names))
        local.attrs = backbone.env.attrs
        for stmt in ast.walk(forward[0]):
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                local.names[stmt.targets[0].id] = evaluate(stmt.value, local)
                value = stmt.value
                if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Mult) and \
                        re.search(r"embeds|hidden_states", source_text(value.left)):
                    candidates.append((value.right, local, f"{forward[1].name}.forward: {source_text(stmt, 90)}"))
            elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.Mult) and \
                    re.search(r"embeds|hidden_states", source_text(stmt.target)):  # CTRL: inputs_embeds *= sqrt(d)
                candidates.append((stmt.value, local, f"{forward[1].name}.forward: {source_text(stmt, 90)}"))
    found = {"norm": _embedding_norm(roles, forward)} if roles.embed_norm is not None else {}
    for expr, env, where in candidates:
        text = source_text(expr, 400) + " " + " ".join(_expanded_names(backbone, expr))
        if isinstance(expr, ast.Name) and expr.id in _local_sources(forward):
            text += " " + _local_sources(forward)[expr.id]
        for kind, pattern in EMBED_SCALE_PATTERNS:
            if re.search(pattern, text):
                value = evaluate(expr, env)
                if isinstance(expr, ast.Attribute):
                    value = _value_in(backbone, expr)
                number = _number(value)
                return {"scale": Observation(kind, where), **found,
                        **({"scale_value": Observation(number, where)} if number else {})}
    return {"scale": Observation("none", f"{backbone.class_name} feeds the embeddings unscaled"), **found}


#: How a computed position table lays out its frequencies: (kind, regex over the module's source). Both put the
#: sines in the first half of a row and the cosines in the second, at frequencies 10000^(-i / d) for i < half:
#: ``fairseq`` divides by half - 1 (XGLM, TrOCR), ``halves`` by half (Marian, Pegasus).
SINUSOID_PATTERNS: tuple[tuple[str, str], ...] = (
    ("fairseq", r"half_dim\s*-\s*1"),
    ("halves", r"2\s*\*\s*\(\s*\w+\s*//\s*2\s*\)"),  # Marian's 2 * (j // 2), CTRL's 2 * (i // 2)
)


def _padding_offset(tree: SourceTree, roles: Roles) -> Observation | None:
    """RoBERTa-style positions: the embeddings module counts positions from ``padding_idx + 1`` (a running count of
    the tokens that are not padding), so a learned table's row for position 0 is ``padding_idx + 1``."""
    holder = _parent(roles.root, roles.embed) if roles.embed is not None else None
    if holder is None or holder.ref is None or holder is roles.backbone:  # OPT's decoder counts from its mask
        return None
    text = " ".join(source_text(m, 100000) for m, _ in tree.methods(holder.ref))
    pad = holder.values.get("padding_idx")
    if "cumsum" not in text or "padding_idx" not in text or not isinstance(pad, int) or isinstance(pad, bool):
        return None
    return Observation(pad + 1, f"{holder.class_name}: positions count from padding_idx + 1 = {pad + 1}")


def position_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """A position module beside the layer list that holds no weights (a computed table): its layout and its row
    offset (XGLM: ``self.offset = 2``); or a learned table's first row counted from the padding index (RoBERTa)."""
    if roles.backbone is None:
        return {}
    padded = _padding_offset(tree, roles)
    if padded is not None:
        return {"learned_offset": padded}
    node = next((child for attr, child in roles.backbone.children.items()
                 if re.search(r"pos", attr) and child.ref is not None
                 and re.search(r"Positional|Position|Sinusoidal", child.ref.name)
                 and not any(c.params for c in child.walk())), None)
    if node is None or node.ref is None:
        buffer = _sinusoid_buffer(tree, roles.backbone)
        return {"sinusoid": buffer, "offset": Observation(0, "a table indexed by position")} if buffer else {}
    text = " ".join(source_text(m, 100000) for m, _ in tree.methods(node.ref))
    kind = next((k for k, pattern in SINUSOID_PATTERNS if re.search(pattern, text)), "unknown")
    offset = node.values.get("offset", 0)
    offset = offset if isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset < 64 else 0
    return {"sinusoid": Observation(kind, f"{node.path} is a {node.class_name} with no weights ({kind} layout)"),
            "offset": Observation(offset, f"{node.class_name}.offset = {offset}")}


def _sinusoid_buffer(tree: SourceTree, backbone: ModuleNode) -> Observation | None:
    """A computed position table the backbone keeps as a buffer, built by a function of the modeling file (CTRL's
    ``pos_encoding = positional_encoding(...)``): its layout, read from that function and the helpers it calls."""
    init = tree.method(backbone.ref, "__init__") if backbone.ref is not None else None
    if init is None:
        return None
    for call in ast.walk(init[0]):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "register_buffer" and len(call.args) >= 2
                and isinstance(call.args[1], ast.Call) and isinstance(call.args[1].func, ast.Name)):
            continue
        built = tree.find_function(init[1].path, call.args[1].func.id)
        if built is None:
            continue
        helpers = [tree.find_function(built[1], name) for name in called_names(built[0])]
        text = " ".join(source_text(f, 100000) for f in (built[0], *(h[0] for h in helpers if h)))
        kind = next((k for k, pattern in SINUSOID_PATTERNS if re.search(pattern, text) and "sin" in text), None)
        if kind is not None:
            return Observation(kind, f"{backbone.class_name} keeps a buffer built by {call.args[1].func.id}() "
                                     f"({kind} layout)")
    return None


def _embedding_norm(roles: Roles, forward: tuple[ast.FunctionDef, Any] | None) -> Observation:
    """``final``: the final norm's own module also normalises the embeddings (NanoChat); ``own``: a norm of their
    own (TrOCR's ``layernorm_embedding``)."""
    node = roles.embed_norm
    assert node is not None
    where = f"{forward[1].name}.forward" if forward else "the backbone's forward"
    if node is roles.final_norm:
        return Observation("final", f"{where}: {node.path} normalises the embeddings before the layers and the last "
                                    "layer's output after them")
    return Observation("own", f"{where}: {node.path} ({node.class_name}) normalises the embeddings before the layers")


def _local_sources(forward: tuple[ast.FunctionDef, ClassRef] | None) -> dict[str, str]:
    if forward is None:
        return {}
    return {s.targets[0].id: source_text(s.value, 200) for s in ast.walk(forward[0])
            if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)}


def head_transform(tree: SourceTree, roles: Roles) -> Observation | None:
    """BERT-style: a dense, an activation and a norm between the last layer and the head's linear; the value is
    the activation's ACT2FN name (``ACT2FN[config.hidden_act]`` built in ``__init__``, or a function its forward
    calls: RoBERTa's ``gelu(x)``)."""
    node = roles.head_transform
    if node is None:
        return None
    activation = node.activations[0] if node.activations else None
    if activation is None:
        found = _forward(tree, node)
        activation = next((n for n in called_names(found[0]) if n in ACTIVATION_FUNCTIONS), None) if found else None
    if activation is None:
        return None
    return Observation(activation, f"{node.path} ({node.class_name}): dense, {activation}, norm before the head")


def head_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """Arithmetic on the logits after the LM head: final softcap, a logit scale, a divisor; a transform before
    it."""
    transform = head_transform(tree, roles)
    result = head_arithmetic(tree, roles)
    return {**result, "transform": transform} if transform else result


def head_arithmetic(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """Arithmetic on the logits after the LM head: final softcap, a logit scale, a divisor."""
    root = roles.root
    found = _forward(tree, root)
    if found is None or root.env is None:
        return {}
    forward, owner = found
    statements = _active_statements(forward.body, root.env)
    after = False
    assigns: list[ast.expr] = []
    for stmt in statements:
        if "lm_head" in source_text(stmt, 100000):
            after = True
            continue
        if after and isinstance(stmt, ast.Assign) and source_text(stmt.targets[0]) == "logits":
            assigns.append(stmt.value)
    result: dict[str, Observation] = {}
    for trait, matcher in LOGIT_PATTERNS:
        hits = [e for e in assigns if matcher(e)]
        if not hits:
            continue
        if trait == "final_softcap":
            divisor = next((e for e in assigns if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Div)), None)
            value = _value_in(root, divisor.right) if divisor is not None else UNKNOWN
            result[trait] = Observation(_number(value),
                                        f"{owner.name}.forward: tanh cap on logits")
            break
        operand = _factor(hits[0])
        value = _value_in(root, operand) if operand is not None else UNKNOWN
        result[trait] = Observation(_number(value),
                                    f"{owner.name}.forward: logits = {source_text(hits[0], 70)}")
    return result


def _factor(expr: ast.expr) -> ast.expr | None:
    if not isinstance(expr, ast.BinOp):
        return None
    return expr.left if source_text(expr.right) == "logits" else expr.right


def _active_statements(body: list[ast.stmt], env: Env) -> list[ast.stmt]:
    """Statements in order, descending into ``if`` blocks whose test is true or unknown."""
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            test = evaluate(stmt.test, env)
            out.extend(_active_statements(stmt.body if test is UNKNOWN or test else stmt.orelse, env))
        else:
            out.append(stmt)
    return out


# --------------------------------------------------------------------------- residual wiring

Sym = tuple  # ("in",) | ("call", attr, Sym) | ("add", (Sym, ...)) | ("mul", Sym, factor) | ("opaque", text)
_PASS_THROUGH_METHODS = frozenset({"to", "type_as", "contiguous", "float", "view", "reshape", "clone"})
_HIDDEN_KWARGS = ("hidden_states", "x", "input", "inputs", "hidden_state", "input_tensor")


#: Layer arguments a causal LM leaves unset: a branch that tests them is the encoder-decoder path (TrOCR's and the
#: BERT-style decoders' cross-attention).
ENCODER_INPUTS = r"\bencoder_hidden_states\b"

#: An MLP kept on the block itself as two linears, input then output (OPT, XGLM, BioGPT, TrOCR).
BLOCK_MLP = ("fc1", "fc2")


class _Tracer:
    """Runs a decoder layer's forward on symbols: which module reads what, and how outputs are summed."""

    def __init__(self, layer: ModuleNode, tree: SourceTree | None = None) -> None:
        self.layer = layer
        self.residual_tree = tree  # where a sublayer that adds its own residual is read (None: not followed)
        # an Identity that other layers build as a norm (ModernBERT-decoder's first attn_norm) is traced as the norm
        self.identity = {a for a, c in layer.children.items()
                         if (c.kind in IDENTITY_KINDS and _layer_norm(layer, a) is None) or "dropout" in a}
        self.state: dict[str, Sym] = {}
        self.factors: list[ast.expr] = []

    def run(self, body: list[ast.stmt], depth: int = 0) -> Sym | None:
        for stmt in body:
            if depth > 6:
                return None
            if isinstance(stmt, ast.Return):
                value = stmt.value
                if isinstance(value, (ast.Tuple, ast.List)) and value.elts:
                    value = value.elts[0]
                return self.sym(value) if value is not None else None
            if isinstance(stmt, ast.If):
                test = evaluate(stmt.test, self.layer.env) if self.layer.env else UNKNOWN
                if test is UNKNOWN and re.search(ENCODER_INPUTS, source_text(stmt.test, 200)):
                    test = False  # a causal LM passes no encoder states: the cross-attention branch never runs
                result = self.run(stmt.body if test is UNKNOWN or test else stmt.orelse, depth + 1)
                if result is not None:
                    return result
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
                self._bind(target, self.sym(stmt.value))
            elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name) and isinstance(stmt.op, ast.Add):
                self.state[stmt.target.id] = _add(self.state.get(stmt.target.id, ("opaque", "")), self.sym(stmt.value))
        return None

    def _bind(self, target: ast.expr, value: Sym) -> None:
        if isinstance(target, ast.Name):
            self.state[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)) and target.elts:
            for index, elt in enumerate(target.elts):
                if isinstance(elt, ast.Name):
                    self.state[elt.id] = value if index == 0 else ("opaque", elt.id)

    def sym(self, expr: ast.expr) -> Sym:  # noqa: C901 - one branch per expression shape
        if isinstance(expr, ast.Name):
            return self.state.get(expr.id, ("opaque", expr.id))
        if isinstance(expr, ast.Call):
            return self._call(expr)
        if isinstance(expr, ast.BinOp):
            if isinstance(expr.op, ast.Add):
                return _add(self.sym(expr.left), self.sym(expr.right))
            if isinstance(expr.op, ast.Mult):
                left, right = self.sym(expr.left), self.sym(expr.right)
                if left[0] != "opaque":
                    self.factors.append(expr.right)
                    return ("mul", left, source_text(expr.right, 60))
                if right[0] != "opaque":
                    self.factors.append(expr.left)
                    return ("mul", right, source_text(expr.left, 60))
            return ("opaque", source_text(expr, 60))
        if isinstance(expr, ast.Subscript):
            return self.sym(expr.value)
        if isinstance(expr, (ast.Tuple, ast.List)) and expr.elts:
            return self.sym(expr.elts[0])
        return ("opaque", source_text(expr, 60))

    def _call(self, call: ast.Call) -> Sym:
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
            arg = self._input(call)
            if func.attr in self.identity:
                return arg
            added = self._residual_handed_in(func.attr, call)
            return ("call", func.attr, arg) if added is None else _add(("call", func.attr, arg), self.sym(added))
        if isinstance(func, ast.Attribute) and func.attr in _PASS_THROUGH_METHODS:
            return self.sym(func.value)
        if isinstance(func, ast.Attribute) and func.attr == "dropout" and call.args:
            return self.sym(call.args[0])
        if _call_leaf(call) in _ADDING_FUNCTIONS and len(call.args) >= 2:  # falcon's dropout_add(x, residual, ...)
            return _add(self.sym(call.args[0]), self.sym(call.args[1]))
        return ("opaque", source_text(call, 60))

    def _residual_handed_in(self, attr: str, call: ast.Call) -> ast.expr | None:
        """The argument a sublayer adds to its own output (BLOOM's ``self_attention(normed, residual)`` returns
        ``dropout_add(out, residual)``): that argument's expression at this call, else None."""
        child = self.layer.children.get(attr)
        found = _forward(self.residual_tree, child) if self.residual_tree is not None else None
        params = [a.arg for a in found[0].args.args][1:] if found else []
        if found is None or len(params) < 2:
            return None
        inner = _Tracer(child)
        inner.state[params[0]] = ("in",)
        inner.state.update({name: ("argument", name) for name in params[1:]})
        result = inner.run(found[0].body)
        added = [term[1] for term in result[1] if term[0] == "argument"] if result and result[0] == "add" else []
        if len(added) != 1:
            return None
        index = params.index(added[0])
        by_name = {kw.arg: kw.value for kw in call.keywords if kw.arg}
        if index < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args[:index + 1]):
            return call.args[index]
        return by_name.get(added[0])

    def _input(self, call: ast.Call) -> Sym:
        if call.args and not isinstance(call.args[0], ast.Starred):
            return self.sym(call.args[0])
        by_name = {kw.arg: kw.value for kw in call.keywords if kw.arg}
        for name in _HIDDEN_KWARGS:
            if name in by_name:
                return self.sym(by_name[name])
        return ("opaque", "")


#: Free functions that return their first two arguments' sum (dropout aside).
_ADDING_FUNCTIONS = {"dropout_add"}


def _add(left: Sym, right: Sym) -> Sym:
    terms = (left[1] if left[0] == "add" else (left,)) + (right[1] if right[0] == "add" else (right,))
    return ("add", terms)


class _InliningTracer(_Tracer):
    """A :class:`_Tracer` for a sublayer's own modules, which also reads what BERT-style output modules write:
    the class's own methods run inline (X-MOD's ``self.lang_adapter(lang_ids, h)``), a norm of a child called on
    what that child returned (``self.output.LayerNorm(self.output(h, residual))``), a loop body once, a masked
    write as the value written, and a module picked from a table by a key (``self.adapter_modules[lang](x)``,
    traced as ``("pick", table, input)``)."""

    def __init__(self, node: ModuleNode, tree: SourceTree) -> None:
        super().__init__(node)
        self.tree = tree
        self.inlined = 0

    def run(self, body: list[ast.stmt], depth: int = 0) -> Sym | None:
        return super().run(_unrolled_once(body), depth)

    def _call(self, call: ast.Call) -> Sym:
        func = call.func
        if isinstance(func, ast.Subscript) and _self_attr(func.value):
            return ("pick", _self_attr(func.value), self._input(call))
        owner = _self_attr(func.value) if isinstance(func, ast.Attribute) else None
        child = self.layer.children.get(owner) if owner else None
        if child is not None and isinstance(func, ast.Attribute) and \
                getattr(child.children.get(func.attr), "kind", None) in NORM_KINDS:
            return ("call", f"{owner}.{func.attr}", self._input(call))
        method = self._own_method(func)
        if method is not None and self.inlined < 4:
            self.inlined += 1
            inner = _InliningTracer(self.layer, self.tree)
            inner.inlined = self.inlined
            params = [a.arg for a in method.args.args][1:]
            for name, arg in zip(params, call.args, strict=False):
                inner.state[name] = self.sym(arg)
            for keyword in call.keywords:
                if keyword.arg in params:
                    inner.state[keyword.arg] = self.sym(keyword.value)
            return inner.run(method.body) or ("opaque", source_text(call, 60))
        return super()._call(call)

    def _own_method(self, func: ast.expr) -> ast.FunctionDef | None:
        """The class's own method ``func`` names (``self.lang_adapter``), not a child module's call."""
        name = _self_attr(func)
        if name is None or name in self.layer.children or self.layer.ref is None or name == "forward":
            return None
        found = self.tree.method(self.layer.ref, name)
        return found[0] if found else None


def _unrolled_once(body: list[ast.stmt]) -> list[ast.stmt]:
    """``body`` with each loop's body in its place (run once) and each masked write ``x[m] = v`` as ``x = v``."""
    flat: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.For):
            flat.extend(_unrolled_once(stmt.body))
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Subscript) \
                and isinstance(stmt.targets[0].value, ast.Name):
            flat.append(ast.Assign(targets=[stmt.targets[0].value], value=stmt.value, lineno=stmt.lineno))
        else:
            flat.append(stmt)
    return flat


def _self_attr(expr: ast.expr) -> str | None:
    """``x`` of ``self.x``."""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
        return expr.attr
    return None


def _nodes(sym: Sym) -> Iterator[Sym]:
    """Every node of a traced expression (calls, sums, products), depth first."""
    stack = [sym]
    while stack:
        current = stack.pop()
        yield current
        if current[0] in ("call", "pick"):
            stack.append(current[2])
        elif current[0] == "add":
            stack.extend(current[1])
        elif current[0] == "mul":
            stack.append(current[1])


def _calls_of(sym: Sym, attrs: set[str]) -> list[Sym]:
    return [node for node in _nodes(sym) if node[0] == "call" and node[1] in attrs]


def _wrapper_of(sym: Sym, inner_attr: str, wrappers: set[str]) -> str | None:
    """The attribute name of the first ``wrapper(inner(...))`` (the norm on a sublayer's output)."""
    for call in _calls_of(sym, wrappers):
        arg = call[2]
        while arg[0] == "mul":
            arg = arg[1]
        if arg[0] == "call" and arg[1] == inner_attr:
            return str(call[1])
    return None


def _norm_after_add(sym: Sym, sublayers: set[str], norms: set[str]) -> bool:
    """The residual stream itself is normed after each add: the block's output is ``norm(x + sublayer)``, or such a
    normed sum is a term of the next residual add (GPT-1's ``h = ln_2(n + mlp(n))`` with ``n = ln_1(x + a)``). A
    pre-norm block also norms a sum (the MLP's input) but keeps adding the unnormed one."""
    def normed_sum(node: Sym) -> bool:
        return node[0] == "call" and node[1] in norms and node[2][0] == "add" and \
            any(_calls_of(part, sublayers) for part in node[2][1])

    return normed_sum(sym) or any(node[0] == "add" and any(normed_sum(term) for term in node[1])
                                  for node in _nodes(sym))


def _residual_from_normed(result: Sym, attn: str, attn_in: Sym, norms: set[str]) -> bool:
    """The attention's output is added to its own normed input rather than the block input (BLOOM with
    ``apply_residual_connection_post_layernorm``): the sum holding the attention's call also holds that norm call."""
    if attn_in[0] != "call" or attn_in[1] not in norms:
        return False
    return any(node[0] == "add" and attn_in in node[1] and any(t[0] == "call" and t[1] == attn for t in node[1])
               for node in _nodes(result))


def _norm_names(result: Sym, attn: str, mlp: str, attn_in: Sym, mlp_in: Sym, norms: set[str]) -> dict[str, str]:
    """Which norm module sits where: role (pre/post attention/MLP) -> the layer's attribute name."""
    names = {
        "pre_attention": attn_in[1] if attn_in[0] == "call" and attn_in[1] in norms else None,
        "post_attention": _wrapper_of(result, attn, norms),
        "pre_mlp": mlp_in[1] if mlp_in[0] == "call" and mlp_in[1] in norms else None,
        "post_mlp": _wrapper_of(result, mlp, norms),
    }
    return {role: str(name) for role, name in names.items() if name}


def _called_only_under(tree: SourceTree, node: ModuleNode | None, inputs: str) -> list[str]:
    """``node``'s children its forward calls only in a branch whose test names one of ``inputs`` (a regex)."""
    found = _forward(tree, node)
    if node is None or found is None:
        return []
    branch_calls = {id(call) for branch in ast.walk(found[0])
                    if isinstance(branch, ast.If) and re.search(inputs, source_text(branch.test, 200))
                    for stmt in branch.body for call in _self_call_nodes(stmt)}
    inside, outside = set(), set()
    for call in _self_call_nodes(found[0]):
        if isinstance(call.func, ast.Attribute):
            (inside if id(call) in branch_calls else outside).add(call.func.attr)
    return sorted(attr for attr in inside - outside if attr in node.children)


def encoder_only_modules(tree: SourceTree, roles: Roles) -> list[str]:
    """The layer's modules its forward calls only in a branch that tests for encoder states (TrOCR's and the
    BERT-style decoders' cross-attention): a causal LM never runs them, so their weights are read by nothing."""
    return _called_only_under(tree, roles.layer, ENCODER_INPUTS)


#: Inputs only a call with images or audio passes; token ids alone never do.
OTHER_MODALITY_INPUTS = (r"\b(?:pixel_values|pixel_attention_mask|image_\w+|\w+_image_\w+|input_features|audio_\w+"
                         r"|\w+_audio_\w+|input_image_embeds|input_audio_embeds)\b")


def modality_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """``unread``: the modules a text-only causal LM never runs (:func:`other_modality_modules`)."""
    unread = other_modality_modules(tree, roles)
    return {"unread": Observation(unread, f"{', '.join(unread)} run only with image or audio inputs, which token "
                                          "ids alone never pass")} if unread else {}


def other_modality_modules(tree: SourceTree, roles: Roles) -> list[str]:
    """Paths of the modules outside the layer list that a forward calls only in a branch testing for image or
    audio inputs (GIT's image encoder, Phi-4-multimodal's image and audio embedders): a text-only causal LM never
    runs them."""
    found: list[str] = []
    queue = [roles.root]
    while queue:
        node = queue.pop(0)
        for attr in _called_only_under(tree, node, OTHER_MODALITY_INPUTS):
            found.append(f"{node.path}.{attr}" if node.path else attr)
        queue += [child for child in node.children.values() if child.kind != "list" and child.ref is not None
                  and child.path not in found]
    return sorted(found)


def _after_add_names(sym: Sym, attn: str, mlp: str, norms: set[str]) -> dict[str, str]:
    """Post-LN: which norm normalises the sum that adds the attention's output, and which the MLP's."""
    names: dict[str, str] = {}
    for node in _nodes(sym):
        if node[0] != "call" or node[1] not in norms or node[2][0] != "add":
            continue
        for term in node[2][1]:
            while term[0] == "mul":
                term = term[1]
            if term[0] == "call" and term[1] in (attn, mlp):
                names.setdefault("after_attention_add" if term[1] == attn else "after_mlp_add", str(node[1]))
    return names


def _residual_output_norms(tree: SourceTree, roles: Roles) -> dict[str, str]:
    """BERT-style post-LN: each sublayer's output module adds the residual it is handed and norms the sum
    (``LayerNorm(dense(h) + input_tensor)``). Role (after the attention's add, or the MLP's) -> the norm's path
    in the layer; empty unless both are found."""
    layer = roles.layer
    if layer is None or roles.attention is None:
        return {}
    names: dict[str, str] = {}
    for node in layer.walk():
        norm = next((a for a, c in node.children.items() if c.kind in NORM_KINDS), None)
        found = _forward(tree, node) if norm is not None and node is not layer else None
        params = [a.arg for a in found[0].args.args][1:] if found else []
        if found is None or len(params) < 2:
            continue
        tracer = _Tracer(node)
        tracer.state[params[0]] = ("in",)
        tracer.state[params[1]] = ("residual",)
        result = tracer.run(found[0].body)
        if result and result[0] == "call" and result[1] == norm and result[2][0] == "add" and \
                ("residual",) in result[2][1]:
            inside_attention = node.path.startswith(f"{layer.path}.{roles.attention[0]}.")
            role = "after_attention_add" if inside_attention else "after_mlp_add"
            names.setdefault(role, f"{node.path[len(layer.path) + 1:]}.{norm}")
    for role, name in _caller_output_norms(tree, roles).items():
        names.setdefault(role, name)
    return names if len(names) == 2 else {}


def _adds_residual(tree: SourceTree, node: ModuleNode) -> bool:
    """``node``'s forward adds its second argument (the residual it is handed) to what it computes."""
    found = _forward(tree, node)
    params = [a.arg for a in found[0].args.args][1:] if found else []
    if found is None or len(params) < 2:
        return False
    tracer = _InliningTracer(node, tree)
    tracer.state[params[0]], tracer.state[params[1]] = ("in",), ("residual",)
    result = tracer.run(found[0].body)
    return result is not None and any(n[0] == "add" and ("residual",) in n[1] for n in _nodes(result))


def _caller_output_norms(tree: SourceTree, roles: Roles) -> dict[str, str]:
    """BERT-style post-LN where the output module only adds the residual and its caller norms what it returned
    (X-MOD's ``self.output.LayerNorm(self.output(h, residual))``, under ``if not self.pre_norm``, in the
    attention wrapper and in the layer). Role -> the norm's path in the layer."""
    layer = roles.layer
    if layer is None or roles.attention is None:
        return {}
    names: dict[str, str] = {}
    for caller in layer.walk():
        found = _forward(tree, caller)
        params = [a.arg for a in found[0].args.args][1:] if found else []
        if found is None or not params:
            continue
        tracer = _InliningTracer(caller, tree)
        tracer.state[params[0]] = ("in",)
        result = tracer.run(found[0].body)
        for node in _nodes(result) if result else ():
            owner, _, norm = str(node[1]).partition(".") if node[0] == "call" else ("", "", "")
            inner = node[2] if norm else ("opaque", "")
            child = caller.children.get(owner)
            if child is None or inner[:2] != ("call", owner) or not _adds_residual(tree, child):
                continue
            inside_attention = child.path.startswith(f"{layer.path}.{roles.attention[0]}.")
            names.setdefault("after_attention_add" if inside_attention else "after_mlp_add",
                             f"{child.path[len(layer.path) + 1:]}.{norm}")
    return names


def language_adapter(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """``adapter``: a sublayer output module that, after adding its residual, runs a module picked from a table by a
    key on that sum (or on its norm) and adds it back (X-MOD's per-language bottleneck MLPs in ``output``). Its
    value: ``table`` (path in the layer), ``norm`` (the norm on the adapter's input, a path in the layer, or None)
    and ``residual`` (``normed``: what the adapter reads is added back; ``sum``: the un-normed sum is)."""
    layer = roles.layer
    for node in layer.walk() if layer is not None else ():
        found = _forward(tree, node) if node is not layer else None
        params = [a.arg for a in found[0].args.args][1:] if found else []
        if found is None or len(params) < 2:
            continue
        tracer = _InliningTracer(node, tree)
        tracer.state[params[0]], tracer.state[params[1]] = ("in",), ("residual",)
        result = tracer.run(found[0].body)
        picked = next((term for term in result[1] if term[0] == "pick"), None) if result and result[0] == "add" \
            else None
        if picked is None:
            continue
        rest = tuple(term for term in result[1] if term is not picked)  # a sum added back is flattened into the add
        read, kept = picked[2], rest[0] if len(rest) == 1 else ("add", rest)
        normed = read[0] == "call" and getattr(node.children.get(read[1]), "kind", None) in NORM_KINDS
        summed = read[2] if normed else read
        if summed[0] != "add" or ("residual",) not in summed[1] or kept not in (read, summed):
            continue
        where = node.path[len(layer.path) + 1:]
        value = {"table": f"{where}.{picked[1]}", "norm": f"{where}.{read[1]}" if normed else None,
                 "residual": "normed" if kept == read and normed else "sum"}
        evidence = (f"{node.class_name}.forward: self.{picked[1]}[key] runs on "
                    f"{f'self.{read[1]}(the residual sum)' if normed else 'the residual sum'} and "
                    f"{'that input' if value['residual'] == 'normed' else 'the sum'} is added back")
        return {"adapter": Observation(value, evidence)}
    return {}


def _norm_of_own_input(tree: SourceTree, node: ModuleNode) -> str | None:
    """The norm child that ``node``'s forward applies to its own first input (``self.ln(hidden_states)``)."""
    norms = {a for a, c in node.children.items() if c.kind in NORM_KINDS}
    found = _forward(tree, node) if norms else None
    if found is None or len(found[0].args.args) < 2:
        return None
    first = found[0].args.args[1].arg
    return next((call.func.attr for call in _self_call_nodes(found[0]) if call.func.attr in norms and call.args
                 and isinstance(call.args[0], ast.Name) and call.args[0].id == first), None)


def sublayer_input_norms(tree: SourceTree, roles: Roles) -> dict[str, str]:
    """BERT-style pre-LN (Megatron-BERT, RoBERTa-PreLayerNorm, XLM-RoBERTa-XL): the attention wrapper norms its
    own input before its self-attention; the MLP's input is normed by the layer (a norm child its methods call)
    or by the MLP's first module (RoBERTa-PreLayerNorm's ``intermediate.LayerNorm``); the output modules only
    add the residual. Role (before the attention, before the MLP) -> the norm's path in the layer; empty unless
    both are found."""
    layer = roles.layer
    wrapper = layer.children.get(roles.attention[0]) if layer is not None and roles.attention else None
    if layer is None or wrapper is None or layer.ref is None:
        return {}
    before_attention = _norm_of_own_input(tree, wrapper)
    if before_attention is None:
        return {}
    layer_norms = [a for a, c in layer.children.items() if c.kind in NORM_KINDS]
    called = {attr for method, _ in tree.methods(layer.ref) for attr in _self_calls(method)}
    if len(layer_norms) == 1 and layer_norms[0] in called:
        before_mlp = layer_norms[0]
    else:
        inner = [f"{a}.{norm}" for a, c in layer.children.items() if c is not wrapper and c.kind not in NORM_KINDS
                 for norm in [_norm_of_own_input(tree, c)] if norm is not None]
        if layer_norms or len(inner) != 1:
            return {}
        before_mlp = inner[0]
    return {"pre_attention": f"{roles.attention[0]}.{before_attention}", "pre_mlp": before_mlp}


def block_behaviour(tree: SourceTree, roles: Roles) -> dict[str, Observation]:
    """residual (sequential / parallel), norms (pre / sandwich / post), parallel_norm, residual multiplier."""
    layer = roles.layer
    found = _forward(tree, layer)
    if layer is None or found is None or roles.attention is None:
        return {}
    if roles.mlp is None and not all(layer.children.get(name) for name in BLOCK_MLP):
        post_ln = _residual_output_norms(tree, roles)
        if post_ln:
            where = f"{layer.class_name}: " + ", ".join(f"{name} norms its sublayer's output plus the residual"
                                                       for name in post_ln.values())
            return {"residual": Observation("sequential", where), "norms": Observation("after_add", where),
                    "norm_names": Observation(post_ln, where)}
        pre_ln = sublayer_input_norms(tree, roles)
        if not pre_ln:
            return {}
        where = (f"{layer.class_name}: {pre_ln['pre_attention']} norms the attention's input, {pre_ln['pre_mlp']} "
                 "the MLP's; the output modules add the residual")
        return {"residual": Observation("sequential", where), "norms": Observation("pre", where),
                "norm_names": Observation(pre_ln, where)}
    forward, owner = found
    params = [a.arg for a in forward.args.args][1:]
    if not params:
        return {}
    tracer = _Tracer(layer, tree)
    tracer.state[params[0]] = ("in",)
    result = tracer.run(forward.body)
    attn = roles.attention[0]
    mlp_first, mlp = (roles.mlp[0], roles.mlp[0]) if roles.mlp else BLOCK_MLP
    norms = set(roles.layer_norms)
    attn_calls, mlp_calls = (_calls_of(result, {attn}), _calls_of(result, {mlp_first})) if result else ([], [])
    if not attn_calls or not mlp_calls or not _calls_of(result, {mlp}):
        return {}
    where = f"{owner.name}.forward"
    attn_in, mlp_in = attn_calls[0][2], mlp_calls[0][2]
    parallel = not _calls_of(mlp_in, {attn})
    names = _norm_names(result, attn, mlp, attn_in, mlp_in, norms)
    pre = "pre_attention" in names or "pre_mlp" in names
    post = "post_attention" in names or "post_mlp" in names
    placement = "sandwich" if pre and post else "post" if post else "pre" if pre else "none"
    from_normed = _residual_from_normed(result, attn, attn_in, norms)
    if not from_normed and _norm_after_add(result, {attn, mlp}, norms):
        placement = "after_add"
        names = _after_add_names(result, attn, mlp, norms)
    out = {
        "residual": Observation("parallel" if parallel else "sequential",
                                f"{where}: " + ("attention and MLP read the same input and are summed" if parallel
                                                else "the MLP reads the attention block's output")),
        "norms": Observation(placement, f"{where}: " + _placement_text(placement)),
    }
    if names:
        out["norm_names"] = Observation(names, f"{where}: " + ", ".join(f"{r} {n}" for r, n in names.items()))
    if from_normed:
        out["residual_source"] = Observation("normed", f"{where}: each residual add takes the sublayer's normed "
                                                       f"input ({attn_in[1]}(x) + attention), not the block input")
    if parallel:
        shared = attn_in == mlp_in
        out["parallel_norm"] = Observation("shared" if shared else "separate",
                                           f"{where}: attention and MLP inputs are "
                                           + ("the same normed tensor" if shared else "normed separately"))
    unread = encoder_only_modules(tree, roles)
    if unread:
        out["cross_attention"] = Observation(unread, f"{where}: {', '.join(unread)} run only when encoder states are "
                                                     "passed, which a causal LM never does")
    identity_on = unnormed_layers(tree, roles)
    unnormed = {role: identity_on[attr] for role, attr in names.items() if attr in identity_on}
    if unnormed:
        out["unnormed_layers"] = Observation(unnormed, f"{owner.name}.__init__: " + ", ".join(
            f"{names[role]} is an Identity on layer(s) {indices}" for role, indices in unnormed.items()))
    for factor in tracer.factors:
        value = _value_in(layer, factor)
        if _is_real(value):
            out["residual_multiplier"] = Observation(_number(value), f"{where}: sublayer output * {source_text(factor, 50)}")
            break
    return out


def _layer_list_node(roles: Roles) -> ModuleNode | None:
    backbone, layer = roles.backbone, roles.layer
    return next((c for c in backbone.children.values() if c.kind == "list" and c.children.get("{i}") is layer),
                None) if backbone is not None and layer is not None else None


def _index_names(tree: SourceTree, roles: Roles) -> tuple[set[str], int] | None:
    """The layer ``__init__``'s parameters that receive the layer list's loop index, and how many layers the loop
    builds (``[Layer(config, layer_idx) for layer_idx in range(config.num_hidden_layers)]``)."""
    listed, layer, backbone = _layer_list_node(roles), roles.layer, roles.backbone
    comp = listed.call.args[0] if listed is not None and listed.call is not None and listed.call.args else None
    if not isinstance(comp, ast.ListComp) or layer is None or layer.call is None or backbone is None \
            or backbone.env is None or layer.ref is None:
        return None
    loop = {g.target.id for g in comp.generators if isinstance(g.target, ast.Name)}
    iterated = comp.generators[0].iter
    count = evaluate(iterated.args[-1], backbone.env) if isinstance(iterated, ast.Call) and \
        _call_leaf(iterated) == "range" and len(iterated.args) == 1 else UNKNOWN
    init = tree.method(layer.ref, "__init__")
    if init is None or not isinstance(count, int):
        return None
    params = [a.arg for a in init[0].args.args][1:]
    bound = {p for p, arg in zip(params, layer.call.args, strict=False) if isinstance(arg, ast.Name) and arg.id in loop}
    bound |= {kw.arg for kw in layer.call.keywords if kw.arg and isinstance(kw.value, ast.Name) and kw.value.id in loop}
    return (bound, count) if bound else None


def unnormed_layers(tree: SourceTree, roles: Roles) -> dict[str, list[int]]:
    """Norms the layer builds as an Identity for some layer indices (ModernBERT-decoder's ``attn_norm``, an
    Identity on layer 0: its embeddings are normed already): attribute -> those indices, read by evaluating the
    ``__init__``'s conditional expression for every index the layer list builds."""
    layer = roles.layer
    varying = [a for a in roles.layer_norms if layer is not None and layer.children[a].kind in IDENTITY_KINDS]
    found = _index_names(tree, roles) if varying else None
    init = tree.method(layer.ref, "__init__") if found is not None and layer is not None and layer.ref else None
    if init is None or layer is None or layer.env is None:
        return {}
    names, count = found  # type: ignore[misc]
    result: dict[str, list[int]] = {}
    for stmt in ast.walk(init[0]):
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        if not (isinstance(target, ast.Attribute) and target.attr in varying and isinstance(stmt.value, ast.IfExp)):
            continue
        choice = stmt.value
        indices = []
        for index in range(count):
            test = evaluate(choice.test, Env(layer.env.config, {**layer.env.names, **dict.fromkeys(names, index)}))
            if test is UNKNOWN:
                indices = []
                break
            built = choice.body if test else choice.orelse
            if isinstance(built, ast.Call) and _call_leaf(built) == "Identity":
                indices.append(index)
        if indices:
            result[target.attr] = indices
    return result


_PLACEMENT_TEXT = {
    "pre": "norm before each sublayer, residual add after",
    "sandwich": "norm before and after each sublayer (post-norm on the output before the residual add)",
    "post": "norm applied to each sublayer's output before the residual add, none on its input",
    "none": "no norm around the sublayers",
    "after_add": "norm applied after each residual add (post-LN: x = norm(x + sublayer(x)))",
}


def _placement_text(placement: str) -> str:
    return _PLACEMENT_TEXT.get(placement, placement)
