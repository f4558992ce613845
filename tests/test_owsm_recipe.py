"""The OWSM path of the real-corpus recipes, end to end at toy size: the MyST recipe's run.sh on
a fixture tree in MyST's real layout, with a tiny random OWSM-shaped model saved in the ESPnet
model-zoo layout (meta.yaml, config, model, BPE, token list, normalisation statistics) as the
foundation, through data preparation, fetching, adaptation (S2T), merge, decoding, forgetting on
LibriSpeech-layout fixtures, and the report."""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from test_corpora import make_librispeech, make_myst
from test_s2t import OWSM_TINY, owsm_tokenizer

RECIPE = ROOT / "egs2" / "myst" / "asr1"
TOY_TRAIN = {"optim": "adamw", "optim_conf": {"lr": 0.005}, "scheduler": None, "max_epoch": 1,
             "batch_type": "unsorted", "batch_size": 2, "num_workers": 0, "use_tensorboard": False,
             "use_matplotlib": False, "num_att_plot": 0, "best_model_criterion": [["valid", "acc", "max"]],
             "keep_nbest_models": 1, "seed": 0,
             "preprocessor_conf": {"time_apply_prob": 1.0, "text_prev_apply_prob": 0.0}}
TOY_DECODE = {"beam_size": 2, "ctc_weight": 0.0, "maxlenratio": 0.5, "lang_sym": "<eng>", "task_sym": "<asr>",
              "predict_time": False}


def model_zoo_owsm(root: Path) -> Path:
    """A tiny random OWSM-shaped S2T model in the layout espnet_model_zoo unpacks to."""
    from espnet2.tasks.s2t import S2TTask

    zoo = root / "owsm_tiny_zoo"
    (zoo / "data" / "token_list" / "bpe").mkdir(parents=True)
    (zoo / "exp" / "s2t_stats" / "train").mkdir(parents=True)
    (zoo / "exp" / "s2t_train").mkdir(parents=True)
    words = "the magnet pulls i'm sure nail it's water goes up it is magnetic yes floats he hoped there would be " \
            "stew for dinner stuff into you his belly counselled a b c d e f g h i j k l m n o p q r s t u v w x y z"
    tokens = owsm_tokenizer(zoo / "data" / "token_list" / "bpe", [words] * 5)
    np.savez(zoo / "exp" / "s2t_stats" / "train" / "feats_stats.npz", count=np.array(100),
             sum=np.zeros(80), sum_square=np.full(80, 100.0))
    cfg = copy.deepcopy(OWSM_TINY)
    cfg.update(token_list=tokens, token_type="bpe", bpemodel="data/token_list/bpe/bpe.model", input_size=None,
               init=None, ctc_conf={}, use_preprocessor=True, non_linguistic_symbols=None, cleaner=None, g2p=None,
               normalize="global_mvn", normalize_conf={"stats_file": "exp/s2t_stats/train/feats_stats.npz"},
               specaug_conf={})
    cwd = os.getcwd()
    os.chdir(zoo)  # ESPnet resolves the stats file relative to the working directory
    try:
        torch.manual_seed(0)
        model = S2TTask.build_model(argparse.Namespace(**cfg))
    finally:
        os.chdir(cwd)
    torch.save(model.state_dict(), zoo / "exp" / "s2t_train" / "valid.acc.ave.pth")
    (zoo / "exp" / "s2t_train" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (zoo / "meta.yaml").write_text(yaml.safe_dump({
        "espnet": "202511", "files": {"s2t_model_file": "exp/s2t_train/valid.acc.ave.pth"},
        "yaml_files": {"s2t_train_config": "exp/s2t_train/config.yaml"}}))
    return zoo


def copy_recipe(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("run.sh", "cmd.sh", "path.sh", "db.sh"):
        shutil.copy(RECIPE / name, dst / name)
    shutil.copytree(RECIPE / "local", dst / "local")
    shutil.copytree(RECIPE / "conf", dst / "conf", symlinks=False)
    (dst / "peft_asr.sh").symlink_to(ROOT / "local" / "peft_asr.sh")  # the recipe's link to the driver
    (dst / "conf" / "train_toy.yaml").write_text(yaml.safe_dump(TOY_TRAIN))
    (dst / "conf" / "decode_toy.yaml").write_text(yaml.safe_dump(TOY_DECODE))
    (dst / "conf" / "peft_toy.yaml").write_text(yaml.safe_dump({
        "method": "ssvd_o", "target_modules": ["*attn.linear_q", "*attn.linear_v", "feed_forward*.w_1"],
        "k_in": 4, "k_out": 4}))
    return dst


def test_myst_owsm_recipe_end_to_end(tmp_path):
    zoo = model_zoo_owsm(tmp_path)
    recipe = copy_recipe(tmp_path / "egs2" / "myst" / "asr1")
    env = dict(os.environ, MAIN_ROOT=str(ROOT), OMP_NUM_THREADS="1", MYST=str(make_myst(tmp_path / "corpus")),
               LIBRISPEECH=str(make_librispeech(tmp_path / "ls")))
    cmd = ["bash", "run.sh", "--owsm", str(zoo), "--ngpu", "0", "--nj", "1", "--min_dur", "0.1",
           "--train_config", "conf/train_toy.yaml", "--decode_config", "conf/decode_toy.yaml",
           "--peft_config", "conf/peft_toy.yaml"]
    res = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    found = recipe / "foundation" / zoo.name
    for f in ("config.yaml", "model.pth", "bpe.model", "tokens.txt", "feats_stats.npz"):
        assert (found / f).exists(), f
    cfg = yaml.safe_load((found / "config.yaml").read_text())
    assert (recipe / cfg["normalize_conf"]["stats_file"]).is_file() and (recipe / cfg["bpemodel"]).is_file()
    exp = recipe / "exp" / f"myst_{zoo.name}_peft_toy"  # tag: <recipe>_<model>_<peft config>
    summary = json.loads((exp / "merged" / "summary.json").read_text())
    assert summary["target_test_sets"] == ["myst_test"]
    assert summary["source_test_sets"] == ["librispeech_test_clean", "librispeech_test_other"]
    for s in ("myst_test", "librispeech_test_clean", "librispeech_test_other"):
        assert summary["adapted"][s]["utterances"] > 0
    # OWSM-format training text, plain references for scoring
    text = (recipe / "dump" / "raw" / "myst_train" / "text").read_text().splitlines()[0]
    assert text.split(" ", 1)[1].startswith("<eng><asr><notimestamps> ")
    assert (recipe / "dump" / "raw" / "myst_test" / "text.plain").exists()
    assert "myst" in (recipe / "exp" / "RESULTS.md").read_text()  # reports go under exp/
    assert not (recipe / "RESULTS.md").exists()
