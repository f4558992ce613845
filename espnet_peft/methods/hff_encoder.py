"""The modules of hierarchical feature fusion (``hff.py``): the trainable head, the encoder that
wraps a frozen ESPnet encoder with it, and its stock form ``encoder: espnet_peft_hff``."""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

import torch
from torch import nn

from espnet2.asr.encoder.abs_encoder import AbsEncoder

from ..errors import PeftError
from .options import Custom, Number, Option, Options


def _fuse_blocks(v):
    if v is None or v == "all":
        return None
    if isinstance(v, (str, bytes)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise ValueError(v)
    return list(v)


OPTIONS = Options(
    Option("fuse_blocks", None, Custom("null, all, or a list of block indices", _fuse_blocks),
           "the encoder blocks whose outputs are fused (null: all)"),
    Option("groups", 3, Number(1, integer=True), "contiguous groups of fused blocks, lower to upper"),
    Option("head_units", None, Number(1, integer=True, null=True), "feed-forward width of the head (null: 2 d)"),
    Option("head_heads", None, Number(1, integer=True, null=True),
           "attention heads of the head (null: the encoder's)"),
    Option("dropout", 0.1, Number(0, 1, high_open=True), "dropout inside the head"),
)


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
    """A frozen ESPnet encoder whose output gains a trainable fused-feature head (built in the
    encoder's dtype and on its device)."""

    options = OPTIONS

    def __init__(self, encoder: nn.Module, head_blocks: int = 1, grad_from_block: Optional[int] = None, **options):
        super().__init__()
        o = self.options.resolve(options, "hff")
        n = len(encoder.encoders)
        fuse = list(range(n)) if o["fuse_blocks"] is None else o["fuse_blocks"]
        if not fuse or any(not 0 <= i < n for i in fuse) or len(set(fuse)) != len(fuse):
            raise PeftError(f"hff: fuse_blocks must be distinct block indices in [0, {n}), got {o['fuse_blocks']}")
        d = encoder.output_size()
        heads = o["head_heads"] or getattr(getattr(encoder.encoders[0], "attn", None), "h", None) or \
            getattr(getattr(encoder.encoders[0], "self_attn", None), "h", None) or 4
        if d % heads:
            raise PeftError(f"hff: head_heads={heads} does not divide the encoder size {d}")
        if grad_from_block is not None and not 0 <= grad_from_block < n:
            raise PeftError(f"hff: adapters.from_block must lie in [0, {n}), got {grad_from_block}")
        self.encoder = encoder
        self.fuse_blocks = sorted(fuse)
        self.grad_from_block = grad_from_block  # blocks from here on carry adapters: they run with gradient
        self.hyper = {"head_blocks": head_blocks}
        for p in encoder.parameters():
            p.requires_grad_(False)
        self.hff = HFFHead(d, len(fuse), o["groups"], head_blocks, o["head_units"] or 2 * d, heads, o["dropout"])
        like = next(encoder.parameters(), None)
        if like is not None:
            self.hff.to(device=like.device, dtype=like.dtype)

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


class HFFStockEncoder(HFFEncoder):
    """``encoder: espnet_peft_hff`` in an ESPnet config: builds the inner encoder, then the head."""

    def __init__(self, input_size: int, inner: str, inner_conf: Optional[dict] = None, head_blocks: int = 1,
                 **options):
        from espnet2.tasks.asr import encoder_choices

        encoder = encoder_choices.get_class(inner)(input_size=input_size, **(inner_conf or {}))
        super().__init__(encoder, head_blocks, **options)
        for p in self.parameters():
            p.requires_grad_(True)  # a stock model: everything trainable, like any ESPnet encoder


def register_with_espnet() -> None:
    """Make ``encoder: espnet_peft_hff`` buildable by ESPnet's ASR and S2T tasks."""
    from espnet2.tasks import asr, s2t

    for choices in (asr.encoder_choices, s2t.encoder_choices):
        choices.classes.setdefault("espnet_peft_hff", HFFStockEncoder)
