"""Which public blocks the installed MAX ships for the traits a wall rule finds, read from its source.

A wall such as "state-space layers" is only a blocker when MAX has nothing to
build the port on. MAX 26.7 ships several token mixers besides softmax
attention (a Mamba selective scan, a Mamba-2 mixer, a gated delta rule, a short
convolution, Kimi delta attention) and multi-latent attention and routed
experts, each as a class inside an architecture or ``max.nn``. :data:`MAX_BLOCKS`
holds one row per trait: where that class lives, the native architecture that
uses it (the donor to read or start from), and where the kernels it calls are
defined. :func:`find_block` is the only code that reads the table.

Everything is read from the files on disk (``ast``), never imported: ``import
max`` is slow and a wall scan must not depend on it. A row whose file or class
is missing in the installed MAX answers ``None``, and the wall stays a blocker.

CPU support is read from the docstrings of the kernel wrappers the block calls
(found by walking the class's code, and the module-level helpers it calls, for
names defined in the row's ``kernel_files``). MAX writes "the kernel has no CPU
implementation" where that is so (``grouped_matmul_ragged``,
``gated_delta_conv1d_fwd``, ...), and its runnable examples pick ``CPU()`` when
no accelerator is present where the kernel runs there. A block that calls no
custom kernel is built from plain graph ops, which MAX compiles for the CPU.
Anything else is reported as not stated, never guessed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from import_model.errors import UserError
from import_model.recon.registry import call_name

#: Where MAX's graph-level kernel wrappers live, relative to the ``max`` package.
KERNELS = "nn/kernels.py"
STATE_SPACE_KERNELS = "nn/state_space"

CPU_YES, CPU_NO, CPU_UNKNOWN = "yes", "no", "not stated"


@dataclass(frozen=True)
class MaxBlock:
    """One trait and the public MAX block that implements it."""

    trait: str
    #: What the block computes, in a few words.
    what: str
    #: The file defining the block, relative to the installed ``max`` package.
    module: str
    #: The class in that file.
    cls: str
    #: The native architecture (slug) whose code uses the block, and the HF class it registers.
    donor: str
    donor_class: str
    #: How CPU support is determined: the files (or folders) whose functions, when the block calls them, are its
    #: kernels; their docstrings say whether each runs on the CPU.
    kernel_files: tuple[str, ...] = (KERNELS, STATE_SPACE_KERNELS)


MAX_BLOCKS: tuple[MaxBlock, ...] = (
    # Mamba-1 selective scan: mamba, falcon_mamba (plus its B/C/dt norms), jamba, zamba, hymba (repo code).
    MaxBlock("mamba", "Mamba selective-scan mixer", "pipelines/architectures/mamba/mamba_module.py",
             "MambaSSMModule", "mamba", "MambaForCausalLM",
             ("pipelines/architectures/mamba/functional_ops.py", KERNELS, STATE_SPACE_KERNELS)),
    # Mamba-2 (SSD) mixer: mamba2, bamba, falcon_h1, granitemoehybrid, nemotron_h, zamba2, plamo2 (repo code).
    MaxBlock("mamba2", "Mamba-2 (SSD) mixer", "pipelines/architectures/nemotron_h/nemotron_h.py",
             "NemotronHMamba2Mixer", "nemotron_h", "NemotronHForCausalLM"),
    # Gated delta rule (Gated DeltaNet linear attention): qwen3_next, qwen3_5, qwen3_5_moe, olmo_hybrid.
    MaxBlock("gated-delta", "Gated DeltaNet (gated delta rule)", "pipelines/architectures/qwen3_5/layers/gated_deltanet.py",
             "GatedDeltaNet", "qwen3_5", "Qwen3_5ForConditionalGeneration"),
    # Short gated convolution: lfm2, lfm2_moe, and lfm2_vl's text model.
    MaxBlock("short-conv", "short gated convolution", "pipelines/architectures/lfm2/lfm2.py",
             "LFM2ShortConv", "lfm2", "Lfm2ForCausalLM"),
    # Kimi delta attention (KDA): kimi_linear (repo code only in transformers 5.12).
    MaxBlock("kda", "Kimi delta attention", "pipelines/architectures/glm5_next/layers/kimi_delta_attention.py",
             "KimiDeltaAttention", "glm5_next", "Glm5NextForConditionalGeneration"),
    # Multi-head latent attention: deepseek_v2, deepseek_v3, kimi_k2 and every config with kv_lora_rank.
    MaxBlock("mla", "multi-head latent attention", "nn/attention/multi_latent_attention.py",
             "LatentAttentionWithRope", "deepseekV3", "DeepseekV3ForCausalLM"),
    # Routed experts: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek, jamba and every config with an expert count.
    MaxBlock("moe", "routed mixture of experts", "nn/moe/moe.py", "MoE", "qwen3", "Qwen3MoeForCausalLM"),
)


@dataclass(frozen=True)
class BlockAnswer:
    """What the installed MAX says about one trait's block."""

    block: MaxBlock
    #: ``max.pipelines.architectures.lfm2.lfm2.LFM2ShortConv``: the dotted name a port imports.
    dotted: str
    #: CPU_YES, CPU_NO or CPU_UNKNOWN.
    cpu: str
    #: Why: the kernels and what their docstrings say.
    cpu_note: str
    kernels: tuple[str, ...]

    def summary(self) -> str:
        """``GatedDeltaNet in max....gated_deltanet, used by MAX's qwen3_5 architecture (...); its kernels ...``."""
        block = self.block
        return (f"{block.cls} in {self.dotted.rsplit('.', 1)[0]}, used by MAX's {block.donor} architecture "
                f"({block.donor_class}); {self.cpu_text()}")

    def cpu_text(self) -> str:
        if self.cpu == CPU_YES:
            return f"its kernels run on the CPU ({self.cpu_note})"
        if self.cpu == CPU_NO:
            return f"its kernels do not run on the CPU ({self.cpu_note}): GPU only"
        return f"whether its kernels run on the CPU is not stated ({self.cpu_note})"


def max_root() -> Path | None:
    """The installed ``max`` package directory, or None when MAX is not installed."""
    from import_model.recon.registry import max_package_dir

    try:
        return max_package_dir()
    except (UserError, ValueError, ImportError):
        return None


@cache
def find_block(trait: str, root: Path | None = None) -> BlockAnswer | None:
    """The public MAX block for ``trait``, or None when the table has no row or the installed MAX lacks it."""
    row = next((b for b in MAX_BLOCKS if b.trait == trait), None)
    base = root if root is not None else max_root()
    if row is None or base is None:
        return None
    tree = _parse(base / row.module)
    node = _class(tree, row.cls)
    if tree is None or node is None:
        return None
    kernels = _kernel_docs(base, row.kernel_files)
    called = sorted(name for name in _called_names(tree, node) if name in kernels)
    cpu, note = _cpu_support(called, kernels, _calls_custom_op(tree, node))
    dotted = "max." + row.module.removesuffix(".py").replace("/", ".") + "." + row.cls
    return BlockAnswer(row, dotted, cpu, note, tuple(called))


# --------------------------------------------------------------------------- reading the source

NO_CPU = re.compile(r"no\s+CPU\s+implementation|\bGPU[- ]only\b", re.IGNORECASE)
#: A runnable docstring example that falls back to the host when there is no accelerator.
CPU_EXAMPLE = re.compile(r"else\s+CPU\(\)")
CUSTOM_OPS = frozenset({"custom", "inplace_custom"})
MAX_SOURCE_BYTES = 4 * 1024 * 1024


@cache
def _parse(path: Path) -> ast.Module | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_SOURCE_BYTES:
            return None
        return ast.parse(path.read_text(errors="replace"))
    except (OSError, SyntaxError, ValueError, RecursionError):
        return None


def _class(tree: ast.Module | None, name: str) -> ast.ClassDef | None:
    if tree is None:
        return None
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def _kernel_docs(base: Path, places: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """``{function name: (file relative to max, docstring)}`` for every top-level function in ``places``."""
    found: dict[str, tuple[str, str]] = {}
    for place in places:
        path = base / place
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        for file in files:
            tree = _parse(file)
            for node in tree.body if tree is not None else []:
                if isinstance(node, ast.FunctionDef) and node.name not in found:
                    found[node.name] = (str(file.relative_to(base)), ast.get_docstring(node) or "")
    return found


def _calls_in(node: ast.AST) -> set[str]:
    return {name for n in ast.walk(node) if isinstance(n, ast.Call) and (name := call_name(n))}


def _called_names(tree: ast.Module, node: ast.ClassDef) -> set[str]:
    """Names the class calls, following the module-level functions of its own file that it calls."""
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    seen: set[str] = set()
    names = _calls_in(node)
    pending = [name for name in names if name in helpers]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        more = _calls_in(helpers[name])
        names |= more
        pending.extend(m for m in more if m in helpers and m not in seen)
    return names


def _calls_custom_op(tree: ast.Module, node: ast.ClassDef) -> bool:
    return bool(_called_names(tree, node) & CUSTOM_OPS)


def _cpu_support(called: list[str], kernels: dict[str, tuple[str, str]], custom_op: bool) -> tuple[str, str]:
    if not called:
        if custom_op:
            return CPU_UNKNOWN, "it calls a custom op directly, whose docstring says nothing about devices"
        return CPU_YES, "it calls no custom kernel: plain graph ops"
    gpu_only = [name for name in called if NO_CPU.search(" ".join(kernels[name][1].split()))]
    if gpu_only:
        return CPU_NO, f"{_names(gpu_only)}: no CPU implementation, per {_their(gpu_only)} docstring"
    on_cpu = [name for name in called if CPU_EXAMPLE.search(kernels[name][1])]
    silent = [name for name in called if name not in on_cpu]
    if not silent:
        return CPU_YES, f"{_names(on_cpu)}: {_their(on_cpu)} docstring example runs on the CPU"
    note = f"MAX's docstrings do not say for {_names(silent)}"
    if on_cpu:
        note += f"; {_names(on_cpu)} {'runs' if len(on_cpu) == 1 else 'run'} on the CPU"
    return CPU_UNKNOWN, note


def _names(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _their(names: list[str]) -> str:
    return "its" if len(names) == 1 else "their"
