"""PEFT on a tiny OWSM-shaped speech-to-text model (E-Branchformer encoder + Transformer
decoder, random weights, built with ESPnet's S2T task) through ``espnet_peft.bin.s2t_train``,
merged and decoded with stock ``espnet2.bin.s2t_inference``."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest
import soundfile
import torch
import yaml

from espnet_peft.bin.merge import merge_experiment

from espnet_fixtures import make_data, write_yaml

SPEECH_LEN = 6  # seconds (OWSM: 30)
OWSM_TINY = {
    "preprocessor": "s2t",
    "preprocessor_conf": {"text_prev_name": "text_prev", "text_ctc_name": "text_ctc", "fs": 16000,
                          "na_symbol": "<na>", "speech_length": SPEECH_LEN, "speech_resolution": 0.02,
                          "speech_init_silence": SPEECH_LEN, "text_prev_apply_prob": 0.5, "time_apply_prob": 1.0,
                          "notime_symbol": "<notimestamps>", "first_time_symbol": "<0.00>",
                          "last_time_symbol": f"<{SPEECH_LEN:.2f}>"},
    "frontend": "default", "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160, "fs": "16k"},
    "specaug": None, "normalize": "utterance_mvn",
    "encoder": "e_branchformer",
    "encoder_conf": {"output_size": 32, "attention_heads": 2, "attention_layer_type": "selfattn",
                     "pos_enc_layer_type": "abs_pos", "rel_pos_type": "latest", "use_flash_attn": False,
                     "cgmlp_linear_units": 64, "cgmlp_conv_kernel": 7, "use_linear_after_conv": False,
                     "gate_activation": "identity", "num_blocks": 2, "dropout_rate": 0.0,
                     "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0, "input_layer": "conv2d",
                     "layer_drop_rate": 0.0, "linear_units": 64, "positionwise_layer_type": "linear",
                     "use_ffn": True, "macaron_ffn": True, "merge_conv_kernel": 7},
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 2, "dropout_rate": 0.0,
                     "positional_dropout_rate": 0.0, "self_attention_dropout_rate": 0.0,
                     "src_attention_dropout_rate": 0.0, "use_flash_attn": False},
    "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False, "sym_na": "<na>"},
}
TRAIN = {"optim": "adamw", "optim_conf": {"lr": 0.005}, "scheduler": None, "max_epoch": 1, "batch_type": "unsorted",
         "batch_size": 4, "num_workers": 0, "use_tensorboard": False, "use_matplotlib": False, "num_att_plot": 0,
         "best_model_criterion": [["valid", "loss", "min"]], "keep_nbest_models": 1, "seed": 0}


def owsm_tokenizer(root: Path, texts):
    import sentencepiece as spm

    times = [f"<{i * 0.02:.2f}>" for i in range(round(SPEECH_LEN / 0.02) + 1)]
    special = ["<na>", "<nospeech>", "<eng>", "<deu>", "<asr>", "<st_eng>", "<notimestamps>"] + times
    (root / "bpe_train.txt").write_text("\n".join(texts) + "\n")
    spm.SentencePieceTrainer.train(input=str(root / "bpe_train.txt"), model_prefix=str(root / "bpe"),
                                   vocab_size=len(special) + 40, model_type="bpe", character_coverage=1.0,
                                   user_defined_symbols=special, minloglevel=2)
    vocab = [l.split("\t")[0] for l in (root / "bpe.vocab").read_text().splitlines()]
    return ["<blank>", "<unk>"] + vocab[3:] + ["<sos>", "<eos>", "<sop>"]


@pytest.fixture(scope="module")
def owsm(tmp_path_factory):
    """Data in OWSM format and a random 'pretrained' OWSM-shaped model in ESPnet's layout."""
    from espnet2.tasks.s2t import S2TTask

    root = tmp_path_factory.mktemp("s2t")
    data = make_data(root)
    for split in ("source_train", "source_dev", "source_test"):
        d = data / split
        lines = [l.split(" ", 1) for l in (d / "text").read_text().splitlines()]
        (d / "text.ctc").write_text("".join(f"{k} {t}\n" for k, t in lines))
        (d / "text.prev").write_text("".join(f"{k} <na>\n" for k, _ in lines))
        (d / "text").write_text("".join(f"{k} <eng><asr><notimestamps> {t}\n" for k, t in lines))
    texts = [l.split(" ", 1)[1] for l in (data / "source_train" / "text").read_text().splitlines()]
    tokens = owsm_tokenizer(root, texts)
    cfg = copy.deepcopy(OWSM_TINY)
    cfg.update(token_list=tokens, token_type="bpe", bpemodel=str(root / "bpe.model"), input_size=None,
               init=None, ctc_conf={}, use_preprocessor=True, non_linguistic_symbols=None, cleaner=None, g2p=None,
               normalize_conf={}, specaug_conf={})
    pre = root / "owsm_tiny"
    pre.mkdir()
    torch.manual_seed(0)
    model = S2TTask.build_model(argparse.Namespace(**cfg))
    torch.save(model.state_dict(), pre / "model.pth")
    (pre / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root, data, pre


def s2t_data_args(data: Path):
    out = []
    for split, name in (("train", "source_train"), ("valid", "source_dev")):
        d = data / name
        out += [f"--{split}_data_path_and_name_and_type", f"{d / 'wav.scp'},speech,sound",
                f"--{split}_data_path_and_name_and_type", f"{d / 'text'},text,text",
                f"--{split}_data_path_and_name_and_type", f"{d / 'text.prev'},text_prev,text",
                f"--{split}_data_path_and_name_and_type", f"{d / 'text.ctc'},text_ctc,text",
                f"--{split}_shape_file", str(d / "wav.scp")]
    return out


@pytest.mark.parametrize("method", ["ssvd_o", "lora"])
def test_owsm_shaped_adapt_merge_decode(owsm, method, monkeypatch):
    from espnet_peft.tasks.s2t import PeftS2TTask

    root, data, pre = owsm
    peft = write_yaml(root / f"{method}.yaml", {
        "method": method, "target_modules": ["*attn.linear_q", "*attn.linear_v", "feed_forward*.w_1", "merge_proj",
                                             "channel_proj1.0", "output_layer"],
        "budget": 12000})
    train = write_yaml(root / "train.yaml", TRAIN)
    exp = root / f"exp_{method}"
    PeftS2TTask.main(cmd=["--config", str(train), "--pretrained_model", str(pre / "model.pth"), "--peft_config",
                          str(peft), "--output_dir", str(exp), "--ngpu", "0"] + s2t_data_args(data))
    ckpt = exp / "valid.loss.best.pth"
    assert (exp / "peft_plan.txt").exists() and ckpt.exists()
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["encoder"] == "e_branchformer" and saved["preprocessor"] == "s2t"  # from the pretrained config
    merged = exp / "merged"
    info = merge_experiment(exp / "config.yaml", ckpt, merged)
    assert info["verify_max_abs_diff"] < 1e-4

    import espnet2.bin.s2t_inference as inf

    def decode(cfg, model, wrapped):
        if wrapped:
            monkeypatch.setattr(inf, "S2TTask", PeftS2TTask)
        s2t = inf.Speech2Text(s2t_train_config=str(cfg), s2t_model_file=str(model), device="cpu", beam_size=2,
                              ctc_weight=0.0, maxlenratio=0.2, lang_sym="<eng>", task_sym="<asr>",
                              predict_time=False)
        if wrapped:
            monkeypatch.undo()
        outs = []
        for line in (data / "source_test" / "wav.scp").read_text().splitlines()[:2]:
            speech, _ = soundfile.read(line.split()[1], dtype="float32")
            outs.append(s2t(speech)[0][2])
        return outs

    assert decode(merged / "config.yaml", merged / "model.pth", False) == decode(exp / "config.yaml", ckpt, True)
