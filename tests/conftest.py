"""Shared fixtures: tiny real ESPnet modules (random weights, deterministic)."""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the scripts of local/ imported as modules find their siblings as they do when run (a script's own
# folder is first on sys.path); appended, so that no installed package is shadowed
sys.path.append(str(ROOT / "local"))
os.environ.setdefault("NLTK_DATA", str(ROOT / ".cache" / "nltk"))  # no network lookups
# the file-identity cache of local/file_id.py: the tests' models are their own, away from ~/.cache
os.environ.setdefault("ESPNET_PEFT_CACHE", str(ROOT / ".cache" / "test_espnet_peft"))

ALL_LINEAR_TARGETS = {
    "ebf": ["attn.linear_q", "attn.linear_k", "attn.linear_v", "attn.linear_out", "feed_forward.w_1",
            "feed_forward.w_2", "feed_forward_macaron.w_1", "feed_forward_macaron.w_2", "channel_proj1.0",
            "channel_proj2", "merge_proj"],
    "conformer": ["self_attn.linear_q", "self_attn.linear_k", "self_attn.linear_v", "self_attn.linear_out",
                  "feed_forward.w_1", "feed_forward.w_2", "feed_forward_macaron.w_1", "feed_forward_macaron.w_2"],
}


def make_ebranchformer(seed: int = 0, blocks: int = 2, d: int = 32):
    from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder

    torch.manual_seed(seed)
    enc = EBranchformerEncoder(input_size=20, output_size=d, attention_heads=2, cgmlp_linear_units=2 * d,
                               num_blocks=blocks, linear_units=3 * d, input_layer="linear", dropout_rate=0.0,
                               positional_dropout_rate=0.0, attention_dropout_rate=0.0, cgmlp_conv_kernel=3,
                               merge_conv_kernel=3, use_ffn=True, macaron_ffn=True)
    return enc.eval()


def make_conformer(seed: int = 0, blocks: int = 2, d: int = 32):
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    torch.manual_seed(seed)
    enc = ConformerEncoder(input_size=20, output_size=d, attention_heads=2, linear_units=3 * d, num_blocks=blocks,
                           input_layer="linear", dropout_rate=0.0, positional_dropout_rate=0.0,
                           attention_dropout_rate=0.0, macaron_style=True, use_cnn_module=True,
                           cnn_module_kernel=3, pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
                           rel_pos_type="latest")
    return enc.eval()


ENCODERS = {"ebf": make_ebranchformer, "conformer": make_conformer}


def encode(enc, x, lens):
    out, _, _ = enc(x, lens)
    return out


@pytest.fixture
def features():
    g = torch.Generator().manual_seed(123)
    x = torch.randn(3, 17, 20, generator=g)
    lens = torch.tensor([17, 12, 9])
    return x, lens


@pytest.fixture(params=sorted(ENCODERS))
def encoder_kind(request):
    return request.param


@pytest.fixture
def keep_torch_load(monkeypatch):
    """torch.load as it was before the test (local/decode.py and the inference CLIs make every
    torch.load weights-only while they decode, and put it back)."""
    monkeypatch.setattr(torch, "load", torch.load)


def randomize_trainables(model, scale: float = 0.05, seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def clone(model):
    return copy.deepcopy(model)


TINY_ASR_CONFIG = {
    "encoder": "e_branchformer",
    "encoder_conf": {"output_size": 32, "attention_heads": 2, "attention_layer_type": "rel_selfattn",
                     "pos_enc_layer_type": "rel_pos", "rel_pos_type": "latest", "cgmlp_linear_units": 64,
                     "cgmlp_conv_kernel": 3, "use_linear_after_conv": False, "gate_activation": "identity",
                     "num_blocks": 2, "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
                     "attention_dropout_rate": 0.0, "input_layer": "conv2d", "linear_units": 64,
                     "positionwise_layer_type": "linear", "use_ffn": True, "macaron_ffn": True,
                     "merge_conv_kernel": 3},
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1, "dropout_rate": 0.0,
                     "positional_dropout_rate": 0.0, "self_attention_dropout_rate": 0.0,
                     "src_attention_dropout_rate": 0.0},
    "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.0},
    "frontend_conf": {"n_fft": 128, "win_length": 128, "hop_length": 64, "n_mels": 20},
    "normalize": "utterance_mvn",
}


def make_asr_model(token_list=None, seed: int = 0, **overrides):
    """A tiny real ESPnetASRModel built by ESPnet's own ASRTask (random weights)."""
    import argparse

    from espnet2.tasks.asr import ASRTask

    cfg = copy.deepcopy(TINY_ASR_CONFIG)
    cfg.update(overrides)
    parser = ASRTask.get_parser()
    args = parser.parse_args([])
    token_list = token_list or ["<blank>", "<unk>"] + list("abcdefgh ") + ["<sos/eos>"]
    for k, v in cfg.items():
        setattr(args, k, v)
    args.token_list = token_list
    args.input_size = None
    torch.manual_seed(seed)
    return ASRTask.build_model(args).eval()
