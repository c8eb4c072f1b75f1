"""The Hugging Face reference: float32 on CPU, with forward hooks at every tap.

Taps, in model order: ``embed`` (token embedding output), ``layer_<i>`` (each
decoder block's output), ``final_norm``, ``lm_head`` (the head's raw output)
and ``logits`` (what the model returns, after any scale or softcap). Module
names differ across families (``model.layers``, ``model.decoder.layers``,
``transformer.h``, ...), so they are read from the model's module tree
(:class:`DecoderModules`), never from a list of names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from import_model.errors import UserError
from import_model.safe_io import FileRefused
from import_model.source import LocalSource, load_config
from import_model.verify.routing import INDICES_TAP


@dataclass(frozen=True)
class DecoderModules:
    """Where a causal LM keeps its decoder: found from its module tree, at any nesting.

    The layer list is the ``ModuleList`` of ``num_hidden_layers`` modules holding the most parameters; the
    embedding and head are what the model's own ``get_input_embeddings`` / ``get_output_embeddings`` return;
    the final norm is the last norm module beside the layer list (not inside a layer).
    """

    layers_path: str
    layers: Any
    embed: Any
    final_norm: Any
    lm_head: Any

    @classmethod
    def find(cls, model: Any, num_layers: int | None) -> DecoderModules:
        import torch

        lists = [(name, module) for name, module in model.named_modules()
                 if isinstance(module, torch.nn.ModuleList) and len(module) > 0
                 and (num_layers is None or len(module) == num_layers)]
        if not lists:
            raise UserError(f"{type(model).__name__}: no list of {num_layers or 'decoder'} layers in its module tree "
                            "to tap; verify cannot compare it block by block")
        name, layers = max(lists, key=lambda item: (_parameters(item[1]), -item[0].count(".")))
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        norms = [module for child, module in parent.named_children()
                 if child != name.rsplit(".", 1)[-1] and "norm" in type(module).__name__.lower()]
        return cls(name, layers, model.get_input_embeddings(), _after_layers(model, layers, norms),
                   model.get_output_embeddings())


def _after_layers(model: Any, layers: Any, norms: list[Any]) -> Any:
    """The norm beside the layer list that runs after the last layer, seen by sending one token through the model:
    a norm that runs only before the layers normalises the embeddings (TrOCR's ``layernorm_embedding``) and is no
    final norm. The last such module if the probe cannot run."""
    import torch

    if not norms:
        return None
    order: list[int] = []
    handles = [norm.register_forward_hook(lambda *_, index=index: order.append(index))
               for index, norm in enumerate(norms)]
    handles.append(layers[-1].register_forward_hook(lambda *_: order.append(-1)))
    try:
        with torch.no_grad():
            model(torch.tensor([[0]]), use_cache=False)
    except Exception:  # noqa: BLE001 - a model the probe cannot drive keeps the declaration-order guess
        return norms[-1]
    finally:
        for handle in handles:
            handle.remove()
    after = order[order.index(-1) + 1:] if -1 in order else []
    return norms[after[0]] if after else None


def _parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _default_language(model: Any) -> list[str]:
    """A model with per-language modules and no default language (X-MOD) cannot run a row of token ids: it is
    set to the config's first language, and the report says so."""
    languages = getattr(model.config, "languages", None)
    setter = getattr(model, "set_default_language", None)
    if not callable(setter) or getattr(model.config, "default_language", None) or not languages:
        return []
    setter(languages[0])
    return [f"the HF model picks per-language modules by a language id: it ran with the config's first language, "
            f"{languages[0]!r} (set_default_language)"]


def tap_names(num_layers: int) -> list[str]:
    return ["embed", *(f"layer_{i}" for i in range(num_layers)), "final_norm", "lm_head", "logits"]


@dataclass
class HFReference:
    model: Any
    modules: DecoderModules
    num_layers: int
    #: What the reference had to be told to run at all (X-MOD's default language), for the report.
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, checkpoint: Path, trust_remote_code: bool = False) -> HFReference:
        """The reference in float32 on CPU; a repo that ships its own modeling code needs ``trust_remote_code``."""
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its load report would repeat, at length, what we say in one line
        refuse_remote_code(checkpoint, trust_remote_code)
        loader = _causal_lm_class(checkpoint, trust_remote_code) or AutoModelForCausalLM
        try:
            # Eager attention is the reference: the fused sdpa path silently drops options such as Gemma2's
            # attention-logit soft-cap, so it is not what the model computes.
            model, info = loader.from_pretrained(str(checkpoint), dtype=torch.float32,
                                                 trust_remote_code=trust_remote_code, output_loading_info=True,
                                                 attn_implementation="eager")
        except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad checkpoint
            raise UserError(f"the HF reference could not load {checkpoint}: {str(exc).splitlines()[0][:200]}") from None
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            # transformers fills missing weights with random values; comparing against that proves nothing.
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise UserError(f"{checkpoint} lacks weights the model needs: {shown}; the HF reference would make "
                            "them up at random, so there is nothing to compare against (re-download or fix the "
                            "checkpoint)")
        model = model.eval()
        modules = DecoderModules.find(model, getattr(model.config, "num_hidden_layers", None))
        return cls(model=model, modules=modules, num_layers=len(modules.layers), notes=_default_language(model))

    def absent_taps(self) -> list[str]:
        """Taps this model has no module for (OPT built without its final norm): nothing to compare there."""
        found = self.modules
        return [name for name, module in (("embed", found.embed), ("final_norm", found.final_norm),
                                          ("lm_head", found.lm_head)) if module is None]

    def run(self, ids: list[int]) -> dict[str, np.ndarray]:
        """One full forward over ``ids``; each tap as ``[seq, ...]`` float32."""
        import torch

        taps: dict[str, np.ndarray] = {}
        found = self.modules
        modules = {"embed": found.embed, "final_norm": found.final_norm, "lm_head": found.lm_head}
        modules.update({f"layer_{i}": layer for i, layer in enumerate(found.layers)})
        handles = []
        for name, module in modules.items():
            if module is not None:
                handles.append(module.register_forward_hook(_capture(taps, name)))
        for index, experts in expert_modules(found.layers).items():
            handles.append(experts.register_forward_pre_hook(_capture_choice(taps, f"{INDICES_TAP}{index}"),
                                                             with_kwargs=True))
        try:
            with torch.no_grad():
                out = self.model(torch.tensor([ids]), use_cache=False)
        except (RuntimeError, ValueError, IndexError) as exc:
            # a model that takes something else than one row of token ids (MusicGen's decoder: a row per codebook)
            raise UserError(f"the HF reference {type(self.model).__name__} cannot run on one row of token ids: "
                            f"{str(exc).splitlines()[0][:200]}") from None
        finally:
            for handle in handles:
                handle.remove()
        taps["logits"] = out.logits[0].float().numpy().copy()
        return taps

    def greedy(self, ids: list[int], steps: int) -> list[int]:
        """Plain argmax decoding that, like the MAX loop, runs past end-of-sequence tokens."""
        import torch

        sequence = list(ids)
        with torch.no_grad():
            for _ in range(steps):
                logits = self.model(torch.tensor([sequence]), use_cache=False).logits[0, -1]
                sequence.append(int(torch.argmax(logits)))
        return sequence[len(ids):]


def _causal_lm_class(checkpoint: Path, trust_remote_code: bool) -> Any:
    """transformers' own class named by ``architectures[0]`` when the auto mapping has no causal LM for the config
    class (Emu3's text model: ``Emu3ForCausalLM`` over ``Emu3TextConfig``); None to use the auto mapping."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    if trust_remote_code:
        return None
    try:
        names = load_config(LocalSource(checkpoint)).get("architectures") or []
        config_class = type(AutoConfig.from_pretrained(str(checkpoint)))
    except Exception:  # noqa: BLE001 - the load itself reports what is wrong with the checkpoint
        return None
    if config_class in MODEL_FOR_CAUSAL_LM_MAPPING or not names or not isinstance(names[0], str):
        return None
    found = getattr(transformers, names[0], None)
    return found if isinstance(found, type) and getattr(found, "config_class", None) is config_class else None


#: The argument transformers passes each MoE layer's experts module with every token's chosen experts.
TOP_K_ARGUMENT = "top_k_index"


def expert_modules(layers: Any) -> dict[int, Any]:
    """Layer index -> the module its tokens' chosen experts are handed to (its forward takes ``top_k_index``)."""
    import inspect

    found = {}
    for index, layer in enumerate(layers):
        for module in layer.modules():
            try:
                parameters = list(inspect.signature(module.forward).parameters)
            except (TypeError, ValueError):
                continue
            if TOP_K_ARGUMENT in parameters:
                found[index] = module
                break
    return found


def _capture_choice(taps: dict[str, np.ndarray], name: str):  # noqa: ANN202 - a torch pre-hook
    def hook(module: Any, args: Any, kwargs: Any) -> None:
        import inspect

        position = list(inspect.signature(module.forward).parameters).index(TOP_K_ARGUMENT)
        value = kwargs.get(TOP_K_ARGUMENT, args[position] if len(args) > position else None)
        if value is not None:
            taps[name] = value.detach().reshape(-1, value.shape[-1]).float().numpy().copy()

    return hook


def _capture(taps: dict[str, np.ndarray], name: str):  # noqa: ANN202 - a torch hook
    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        value = output[0] if isinstance(output, (tuple, list)) else output
        taps[name] = value[0].detach().float().numpy().copy()

    return hook


def refuse_remote_code(checkpoint: Path, trusted: bool) -> None:
    """Stop before transformers would import Python shipped in the model repository, unless the user said so."""

    try:
        config = LocalSource(checkpoint).read_json("config.json")  # {} when missing: transformers reports that
    except FileRefused:
        raise  # a device, a FIFO or a huge file: transformers must not open it either
    except UserError:
        return  # transformers reports a broken config itself
    auto_map = config.get("auto_map")
    if auto_map and not trusted:
        raise UserError(f"{checkpoint}: config.json maps the model to Python files in the repository (auto_map); "
                        "the HF reference would import and run them with your user's rights. Read them first; "
                        "pass --trust-remote-code only if you trust that code")
