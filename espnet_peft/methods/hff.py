"""Hierarchical feature fusion (HFF): a frozen encoder run without gradient, the outputs of
several of its blocks fused (learned weights per layer inside groups, grouped lower to upper,
and a weight per group), and a small trainable Transformer head on the fused features.

The head's output projection starts at zero and is added to the frozen encoder's output, so
the model is exactly the pretrained one at initialisation and the pretrained CTC and decoder
keep working on the result. Nothing back-propagates through the frozen encoder: its forward
runs under ``torch.no_grad()``, which is where HFF's speed and memory saving come from.

Config (``method: hff``, ``target_modules: [encoder]``): ``head_blocks`` (or a ``budget``,
solved into the number of head blocks), ``fuse_blocks`` (block indices, default all),
``groups`` (default 3), ``head_units`` (feed-forward width, default 2 d), ``head_heads``
(attention heads, default the encoder's), ``dropout``, and ``adapters`` (optional: a matrix
method with explicit sizes on the upper blocks of the frozen encoder, e.g.
``{method: lora, rank: 4, target_modules: [attn.linear_q, attn.linear_v], from_block: 4}``;
gradient then flows from block ``from_block`` up, never below it). The result is not a plain ESPnet
encoder: ``HFFEncoder`` is registered in ESPnet's encoder choices as ``espnet_peft_hff`` when
``espnet_peft.methods.hff`` is imported (``espnet_peft.bin.asr_inference`` does that).
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

import torch
from torch import nn

from espnet2.asr.encoder.abs_encoder import AbsEncoder

from .base import Method, PeftError

MAX_HEAD_BLOCKS = 12


def _block_tensor(out):
    """The hidden states in an ESPnet encoder block's output ((x, mask) or ((x, pos), mask))."""
    x = out[0] if isinstance(out, (tuple, list)) else out
    return x[0] if isinstance(x, (tuple, list)) else x


def _enable_grad(module, args) -> None:
    torch.set_grad_enabled(True)  # a pre-hook must return None (a value would replace the inputs)


def split_groups(n: int, groups: int) -> List[int]:
    """Group index of each of ``n`` fused layers: ``groups`` contiguous groups, lower first."""
    groups = max(1, min(groups, n))
    return [min(groups - 1, i * groups // n) for i in range(n)]


class HFFHead(nn.Module):
    """The trainable part: fusion weights, a small Transformer stack, the zero-initialised output."""

    def __init__(self, d: int, n_fused: int, groups: int, blocks: int, units: int, heads: int, dropout: float):
        from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
        from espnet.nets.pytorch_backend.transformer.encoder_layer import EncoderLayer
        from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import PositionwiseFeedForward

        super().__init__()
        self.group_index = split_groups(n_fused, groups)
        self.layer_logits = nn.Parameter(torch.zeros(n_fused))
        self.group_weights = nn.Parameter(torch.full((max(self.group_index) + 1,), 1.0 / (max(self.group_index) + 1)))
        self.norm_in = nn.LayerNorm(d, elementwise_affine=False)
        self.blocks = nn.ModuleList(
            EncoderLayer(d, MultiHeadedAttention(heads, d, dropout), PositionwiseFeedForward(d, units, dropout),
                         dropout, normalize_before=True) for _ in range(blocks))
        self.norm_out = nn.LayerNorm(d)
        self.out = nn.Linear(d, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def fuse(self, hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        gi = torch.tensor(self.group_index, device=self.layer_logits.device)
        fused = 0
        for g in range(len(self.group_weights)):
            idx = (gi == g).nonzero().flatten().tolist()
            w = torch.softmax(self.layer_logits[idx], dim=0)
            fused = fused + self.group_weights[g] * sum(w[j] * self.norm_in(hidden[i]) for j, i in enumerate(idx))
        return fused

    def forward(self, hidden: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        y = self.fuse(hidden)
        for block in self.blocks:
            y, mask = block(y, mask)
        return self.out(self.norm_out(y))


class HFFEncoder(AbsEncoder):
    """A frozen ESPnet encoder whose output gains a trainable fused-feature head."""

    def __init__(self, encoder: nn.Module, fuse_blocks: Optional[Sequence[int]] = None, groups: int = 3,
                 head_blocks: int = 1, head_units: Optional[int] = None, head_heads: Optional[int] = None,
                 dropout: float = 0.1, grad_from_block: Optional[int] = None):
        super().__init__()
        n = len(encoder.encoders)
        fuse = list(range(n)) if fuse_blocks in (None, "all") else [int(i) for i in fuse_blocks]
        if not fuse or any(not 0 <= i < n for i in fuse) or len(set(fuse)) != len(fuse):
            raise PeftError(f"hff: fuse_blocks must be distinct block indices in [0, {n}), got {fuse_blocks}")
        d = encoder.output_size()
        heads = head_heads or getattr(getattr(encoder.encoders[0], "attn", None), "h", None) or \
            getattr(getattr(encoder.encoders[0], "self_attn", None), "h", None) or 4
        if d % heads:
            raise PeftError(f"hff: head_heads={heads} does not divide the encoder size {d}")
        self.encoder = encoder
        self.fuse_blocks = sorted(fuse)
        if grad_from_block is not None and not 0 <= grad_from_block < n:
            raise PeftError(f"hff: adapters.from_block must lie in [0, {n}), got {grad_from_block}")
        self.grad_from_block = grad_from_block  # blocks from here on carry adapters: they run with gradient
        self.hyper = {"head_blocks": head_blocks}
        for p in encoder.parameters():
            p.requires_grad_(False)
        self.hff = HFFHead(d, len(fuse), groups, head_blocks, head_units or 2 * d, heads, dropout)

    def output_size(self) -> int:
        return self.encoder.output_size()

    def __getattr__(self, name):  # ESPnet models read encoder attributes (interctc_use_conditioning, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("encoder")
            if inner is None:
                raise
            return getattr(inner, name)

    def forward(self, xs_pad, ilens, prev_states=None, ctc=None, **kwargs):
        from espnet.nets.pytorch_backend.nets_utils import make_pad_mask

        captured = {}
        hooks = [self.encoder.encoders[i].register_forward_hook(
            lambda m, a, o, i=i: captured.__setitem__(i, _block_tensor(o))) for i in self.fuse_blocks]
        if self.grad_from_block is not None and torch.is_grad_enabled():
            # nested adapters: gradient resumes at the first adapted block, never below it
            hooks.append(self.encoder.encoders[self.grad_from_block].register_forward_pre_hook(_enable_grad))
        try:
            with torch.no_grad():  # nothing back-propagates through the frozen encoder (below adapters)
                kw = {"ctc": ctc} if ctc is not None else {}
                out, olens, states = self.encoder(xs_pad, ilens, prev_states, **kw)
        finally:
            for h in hooks:
                h.remove()
        main = out[0] if isinstance(out, tuple) else out
        mask = (~make_pad_mask(olens, maxlen=main.size(1)))[:, None, :].to(main.device)
        y = main + self.hff([captured[i] for i in self.fuse_blocks], mask)
        return ((y,) + tuple(out[1:]) if isinstance(out, tuple) else y), olens, states

    def adapter_state(self):
        return {f"hff.{k}": v.detach() for k, v in self.hff.state_dict().items()}

    @torch.no_grad()
    def load_adapter_state(self, state: Mapping[str, torch.Tensor]) -> None:
        sub = {k[len("hff."):]: v for k, v in state.items() if k.startswith("hff.")}
        missing, unexpected = self.hff.load_state_dict(sub, strict=False)
        if missing or unexpected or len(sub) != len(state):
            raise PeftError(f"HFF state does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")


def _block_params(d: int, units: int) -> int:
    attn = 4 * (d * d + d)
    ffn = d * units + units + units * d + d
    norms = 2 * 2 * d
    return attn + ffn + norms


class HFF(Method):
    name = "hff"
    hyper_keys = ("head_blocks",)
    summary = "frozen encoder (no gradient), hierarchical fusion of block outputs, small trainable head"
    options = {"fuse_blocks": None, "groups": 3, "head_units": None, "head_heads": None, "dropout": 0.1,
               "adapters": None}
    inner_attr = "encoder"

    def supports(self, module: nn.Module) -> bool:
        return hasattr(module, "encoders") and hasattr(module, "output_size") and not isinstance(module, HFFEncoder)

    def shape(self, module: nn.Module):
        return (len(module.encoders), module.output_size())

    def _n_fused(self, shape, opts) -> int:
        fb = opts.get("fuse_blocks")
        return shape[0] if fb in (None, "all") else len(fb)

    def count(self, shape, hyper, opts) -> int:
        n, d = shape
        units = opts.get("head_units") or 2 * d
        fused = self._n_fused(shape, opts)
        groups = max(split_groups(fused, int(opts.get("groups", 3)))) + 1
        return fused + groups + hyper["head_blocks"] * _block_params(d, units) + 2 * d + d * d + d

    def max_hyper(self, shape, opts):
        return {"head_blocks": MAX_HEAD_BLOCKS}

    def solve(self, shape, budget, opts):
        best = None
        for b in range(1, MAX_HEAD_BLOCKS + 1):
            if self.count(shape, {"head_blocks": b}, opts) <= budget:
                best = {"head_blocks": b}
        return best

    def grow(self, shape, hyper, opts):
        return {"head_blocks": hyper["head_blocks"] + 1} if hyper["head_blocks"] < MAX_HEAD_BLOCKS else None

    def explicit(self, shape, values, opts):
        v = values.get("head_blocks")
        if v is None:
            raise PeftError("hff needs head_blocks (or a budget)")
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_HEAD_BLOCKS:
            raise PeftError(f"hff: head_blocks must be an int in [0, {MAX_HEAD_BLOCKS}], got {v!r}")
        return {"head_blocks": v}

    def validate(self, shape, hyper) -> None:
        return None

    def build(self, module, hyper, opts):
        adapters = opts.get("adapters") or None
        return HFFEncoder(module, opts.get("fuse_blocks"), int(opts.get("groups", 3)), hyper["head_blocks"],
                          opts.get("head_units"), opts.get("head_heads"), float(opts.get("dropout", 0.1)),
                          grad_from_block=int(adapters.get("from_block", 0)) if adapters else None)

    def merge(self, module):
        return module  # the head stays: HFF models are exported with the registered encoder

    def export_config(self, config: dict, row, opts) -> dict:
        """The stock config of a merged HFF model: the registered ``espnet_peft_hff`` encoder."""
        register_with_espnet()
        out = dict(config)
        out["encoder_conf"] = {"inner": config["encoder"], "inner_conf": dict(config.get("encoder_conf") or {}),
                               "head_blocks": row.hyper["head_blocks"],
                               **{k: opts.get(k, v) for k, v in self.options.items() if k != "adapters"}}
        out["encoder"] = "espnet_peft_hff"
        return out

    def trainable_state(self, module):
        return module.adapter_state()

    def load_trainable_state(self, module, state):
        module.load_adapter_state(state)


class HFFStockEncoder(HFFEncoder):
    """``encoder: espnet_peft_hff`` in an ESPnet config: builds the inner encoder, then the head."""

    def __init__(self, input_size: int, inner: str, inner_conf: Optional[dict] = None, fuse_blocks=None,
                 groups: int = 3, head_blocks: int = 1, head_units: Optional[int] = None,
                 head_heads: Optional[int] = None, dropout: float = 0.1):
        from espnet2.tasks.asr import encoder_choices

        encoder = encoder_choices.get_class(inner)(input_size=input_size, **(inner_conf or {}))
        super().__init__(encoder, fuse_blocks, groups, head_blocks, head_units, head_heads, dropout)
        for p in self.parameters():
            p.requires_grad_(True)  # a stock model: everything trainable, like any ESPnet encoder


def register_with_espnet() -> None:
    """Make ``encoder: espnet_peft_hff`` buildable by ESPnet's ASR and S2T tasks."""
    from espnet2.tasks import asr, s2t

    for choices in (asr.encoder_choices, s2t.encoder_choices):
        choices.classes.setdefault("espnet_peft_hff", HFFStockEncoder)
