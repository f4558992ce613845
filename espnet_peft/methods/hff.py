"""Hierarchical feature fusion (HFF): a frozen encoder run without gradient, the outputs of
several of its blocks fused (learned weights per layer inside groups, grouped lower to upper,
and a weight per group), and a small trainable Transformer head on the fused features.

The head's output projection starts at zero and is added to the frozen encoder's output, so
the model is exactly the pretrained one at initialisation and the pretrained CTC and decoder
keep working on the result. Nothing back-propagates through the frozen encoder: its forward
runs under ``torch.no_grad()``, which is where HFF's speed and memory saving come from.

Config (``method: hff``, ``target_modules: [encoder]``): ``head_blocks`` (or a ``budget``,
solved into the number of head blocks), the options below, and ``adapters`` (optional: a matrix
method with explicit sizes on the upper blocks of the frozen encoder, e.g.
``{method: lora, rank: 4, target_modules: [attn.linear_q, attn.linear_v], from_block: 4}``;
gradient then flows from block ``from_block`` up, never below it). The result is not a plain ESPnet
encoder: ``register_with_espnet()`` adds it to ESPnet's encoder choices as ``espnet_peft_hff``
(``export_config`` and ``espnet_peft.bin.asr_inference`` call it)."""
from __future__ import annotations

from typing import Mapping

from torch import nn

from ..errors import PeftError
from .hff_encoder import HFFEncoder, register_with_espnet, split_groups
from .options import Custom, Option, Options
from .sizing import PerUnitCost

__all__ = ["HFF", "HFFEncoder", "register_with_espnet"]

MAX_HEAD_BLOCKS = 12


def _adapters(v):
    if v is None or isinstance(v, Mapping):
        return None if not v else dict(v)
    raise ValueError(v)


def _block_params(d: int, units: int) -> int:
    attn = 4 * (d * d + d)
    ffn = d * units + units + units * d + d
    norms = 2 * 2 * d
    return attn + ffn + norms


class HFF(PerUnitCost):
    name = "hff"
    hyper_keys = ("head_blocks",)
    options = HFFEncoder.options + Options(Option(
        "adapters", None, Custom("null or a PEFT config (a matrix method, explicit sizes) with from_block", _adapters),
        "adapters on the upper blocks of the frozen encoder, e.g. `{method: lora, rank: 4, target_modules: "
        "[attn.linear_q], from_block: 4}`; gradient resumes at `from_block`, never below it"))
    inner_attr = "encoder"
    exports_stock_model = False
    espnet_components = ("espnet_peft_hff",)

    def register_with_espnet(self) -> None:
        register_with_espnet()
    bench_targets = ("encoder",)

    def supports(self, module: nn.Module) -> bool:
        return hasattr(module, "encoders") and hasattr(module, "output_size") and not isinstance(module, HFFEncoder)

    def shape(self, module: nn.Module):
        return (len(module.encoders), module.output_size())

    def fixed(self, shape, opts) -> int:
        """Fusion weights (one per fused block, one per group) and the output norm and projection."""
        n, d = shape
        fb = self.option(opts, "fuse_blocks")
        fused = n if fb in (None, "all") else len(fb)
        groups = max(split_groups(fused, int(self.option(opts, "groups")))) + 1
        return fused + groups + 2 * d + d * d + d

    def unit(self, shape, opts) -> int:
        d = shape[1]
        return _block_params(d, self.option(opts, "head_units") or 2 * d)

    def limit(self, shape) -> int:
        return MAX_HEAD_BLOCKS

    def explicit(self, shape, values, opts):
        v = values.get("head_blocks")
        if v is None:
            raise PeftError("hff needs head_blocks (or a budget)")
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_HEAD_BLOCKS:
            raise PeftError(f"hff: head_blocks must be an int in [0, {MAX_HEAD_BLOCKS}], got {v!r}")
        return {"head_blocks": v}

    def step_flops(self, rows, tokens, linears):
        """No bound relative to the frozen-base floor: nothing back-propagates through the frozen
        encoder, so a step is expected below the floor."""
        return None

    def build(self, module, hyper, opts):
        adapters = self.option(opts, "adapters")
        return HFFEncoder(module, hyper["head_blocks"], int(adapters.get("from_block", 0)) if adapters else None,
                          **HFFEncoder.options.pick(opts))

    def merge(self, module):
        return module  # the head stays: HFF models are exported with the registered encoder

    def export_config(self, config: dict, row, opts) -> dict:
        """The stock config of a merged HFF model: the registered ``espnet_peft_hff`` encoder."""
        register_with_espnet()
        out = dict(config)
        out["encoder_conf"] = {"inner": config["encoder"], "inner_conf": dict(config.get("encoder_conf") or {}),
                               "head_blocks": row.hyper["head_blocks"],
                               **{o.name: self.option(opts, o.name) for o in HFFEncoder.options}}
        out["encoder"] = "espnet_peft_hff"
        return out
