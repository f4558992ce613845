"""Tiny real ESPnet experiments for the end-to-end tests: synthetic speech data, a pretrained
tiny ASR model (trained by stock ``espnet2.bin.asr_train``), and a tiny OWSM-shaped S2T model."""
from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Dict, List

import yaml

from conftest import ROOT, TINY_ASR_CONFIG

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
