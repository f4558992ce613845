"""Tiny real ESPnet experiments for the end-to-end tests: synthetic speech data, a pretrained
tiny ASR model (trained by stock ``espnet2.bin.asr_train``), and a tiny OWSM-shaped S2T model; tiny
random ASR and S2T model directories and chirp data for the decoding tests."""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile
import torch
import yaml

from conftest import ROOT, TINY_ASR_CONFIG

#: the token list of :func:`tiny_asr_dir`
ASR_TOKENS = ["<blank>", "<unk>", "<space>"] + list("abcdefgh") + ["<sos/eos>"]
TRAIN_OPTS = {
    "optim": "adam", "optim_conf": {"lr": 0.004}, "scheduler": None, "max_epoch": 2, "batch_type": "unsorted",
    "batch_size": 4, "num_workers": 0, "use_tensorboard": False, "use_matplotlib": False, "num_att_plot": 0,
    "best_model_criterion": [["valid", "loss", "min"]], "keep_nbest_models": 1, "seed": 0, "log_interval": 1,
}


def local_module(name: str):
    """A recipe script of ``local/`` imported as a module (registered under its name)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "local" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def synth_module():
    return local_module("synth_corpus")


def make_data(root: Path) -> Path:
    """A few flite / espeak utterances per split (source domain only), Kaldi-style."""
    synth = synth_module()
    sizes = {("source", "train"): 12, ("source", "dev"): 4, ("source", "test"): 4,
             ("child", "train"): 1, ("child", "dev"): 1, ("child", "test"): 1,
             ("accent", "train"): 1, ("accent", "dev"): 1, ("accent", "test"): 1}
    synth.build(root / "data", root / "wav", seed=3, nj=2, domains=["source"], sizes=sizes, vocab_size=600)
    return root / "data"


def char_tokens(data: Path) -> List[str]:
    chars = sorted({c for line in (data / "source_train" / "text").read_text().splitlines()
                    for c in line.split(" ", 1)[1].replace(" ", "")})
    return ["<blank>", "<unk>", "<space>"] + chars + ["<sos/eos>"]


def data_args(data: Path, train: str = "source_train", valid: str = "source_dev") -> List[str]:
    out = []
    for split, name in (("train", train), ("valid", valid)):
        out += [f"--{split}_data_path_and_name_and_type", f"{data / name / 'wav.scp'},speech,sound",
                f"--{split}_data_path_and_name_and_type", f"{data / name / 'text'},text,text",
                f"--{split}_shape_file", str(data / name / "wav.scp")]
    return out


def write_yaml(path: Path, obj: Dict) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return path


def pretrain_asr(root: Path, data: Path) -> Path:
    """Train the tiny 'pretrained' model with stock ESPnet; returns its experiment dir."""
    from espnet2.tasks.asr import ASRTask

    tokens = root / "tokens.txt"
    tokens.write_text("\n".join(char_tokens(data)) + "\n")
    cfg = copy.deepcopy(TINY_ASR_CONFIG)
    cfg.update(TRAIN_OPTS)
    conf = write_yaml(root / "pretrain.yaml", cfg)
    exp = root / "exp_pretrain"
    ASRTask.main(cmd=["--config", str(conf), "--token_type", "char", "--token_list", str(tokens),
                      "--output_dir", str(exp), "--ngpu", "0"] + data_args(data))
    return exp


def peft_train(root: Path, data: Path, pretrained: Path, peft_cfg: Dict, name: str, max_epoch: int = 1,
               extra: List[str] = ()) -> Path:
    from espnet_peft.tasks.asr import PeftASRTask

    peft = write_yaml(root / f"{name}.peft.yaml", peft_cfg)
    opts = dict(TRAIN_OPTS, max_epoch=max_epoch, optim_conf={"lr": 0.01})
    conf = write_yaml(root / f"{name}.train.yaml", opts)
    exp = root / f"exp_{name}"
    PeftASRTask.main(cmd=["--config", str(conf), "--pretrained_model", str(pretrained / "valid.loss.best.pth"),
                          "--peft_config", str(peft), "--output_dir", str(exp), "--ngpu", "0", "--resume", "true"]
                     + data_args(data) + list(extra))
    return exp


def write_wavs(root: Path, n: int = 3, seconds: float = 1.0, seed: int = 0) -> Path:
    """A data directory of ``n`` chirps in noise (16 kHz mono), wav.scp only."""
    g = np.random.default_rng(seed)
    d = root / "set"
    (root / "wav").mkdir(parents=True, exist_ok=True)
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        t = np.arange(int(16000 * seconds)) / 16000
        x = 0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t * (1 + t)) + 0.05 * g.standard_normal(t.size)
        path = root / "wav" / f"u{i}.wav"
        soundfile.write(path, x.astype("float32"), 16000)
        lines.append(f"u{i} {path}\n")
    (d / "wav.scp").write_text("".join(lines))
    return d


def read_text(path: Path) -> dict:
    """A Kaldi-style ``key value`` file (hypotheses, wav.scp) as a dict."""
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(" ")
        out[k] = v
    return out


def tiny_asr_dir(root: Path):
    """A tiny real ESPnet ASR model (random weights, character tokens) saved in ``root/model`` as ESPnet
    saves one (config + weights): ``(root, model dir, model)``."""
    from espnet2.tasks.asr import ASRTask

    args = ASRTask.get_parser().parse_args([])
    for k, v in copy.deepcopy(TINY_ASR_CONFIG).items():
        setattr(args, k, v)
    args.token_list, args.token_type, args.input_size = ASR_TOKENS, "char", None
    torch.manual_seed(0)
    model = ASRTask.build_model(args).eval()
    d = root / "model"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), d / "model.pth")
    return root, d, model


def tiny_owsm_dir(root: Path):
    """A tiny OWSM-shaped S2T model (test_s2t's), its CTC head shifted so that its greedy output mixes
    special tokens (timestamps) with word pieces, saved in ``root/model``: ``(root, model dir, model, tokens)``."""
    from espnet2.tasks.s2t import S2TTask

    from test_s2t import OWSM_TINY, owsm_tokenizer

    texts = ["the cat sat on the mat", "a dog ran home today", "she sells sea shells by the shore"] * 3
    tokens = owsm_tokenizer(root, texts)
    cfg = copy.deepcopy(OWSM_TINY)
    cfg.update(token_list=tokens, token_type="bpe", bpemodel=str(root / "bpe.model"), input_size=None,
               init=None, ctc_conf={}, use_preprocessor=True, non_linguistic_symbols=None, cleaner=None, g2p=None,
               normalize_conf={}, specaug_conf={})
    torch.manual_seed(0)
    model = S2TTask.build_model(argparse.Namespace(**cfg)).eval()
    special = torch.tensor([t.startswith("<") and t.endswith(">") for t in tokens])
    with torch.no_grad():
        lo = model.ctc.ctc_lo
        lo.weight.copy_(torch.randn(lo.weight.shape, generator=torch.Generator().manual_seed(1)))
        lo.bias.copy_(torch.where(special, 0.0, 3.0))
    d = root / "model"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    torch.save(model.state_dict(), d / "model.pth")
    return root, d, model, tokens
