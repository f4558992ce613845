"""Per-utterance adapter routing (issue 29 item 2; ``espnet_peft.routing``): its arguments and tables,
the mixed sets that name each utterance's adapter (local/mix_sets.py), and routed decoding on one load
of a tiny real ESPnet model, by local/decode.py and by ``espnet_peft.bin.{asr,s2t}_inference``, each
utterance's hypothesis equal to that of its adapter's merged model."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from espnet_fixtures import local_module, read_text, tiny_asr_dir, tiny_owsm_dir, write_wavs

NOLM_CONFIG = ROOT / "egs2" / "embedded" / "asr1" / "conf" / "decode_nolm.yaml"


@pytest.fixture(scope="module")
def decode():
    return local_module("decode")


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    return tiny_asr_dir(tmp_path_factory.mktemp("routed_asr"))


@pytest.fixture(scope="module")
def owsm(tmp_path_factory):
    return tiny_owsm_dir(tmp_path_factory.mktemp("routed_s2t"))


def test_routing_arguments_and_tables_are_checked(tmp_path):
    """The routing options come off a stock command line in both spellings; a malformed spec, a
    reserved or repeated name, a missing file and an utterance listed twice are errors naming them."""
    from espnet_peft.errors import PeftError
    from espnet_peft.routing import Router, read_table, split_routing_args

    specs, table, rest = split_routing_args(["--beam_size", "2", "--adapter", "a=x.pth", "--adapter=b=y.pth",
                                             "--utt2adapter=u2a", "--output_dir", "out"])
    assert specs == ["a=x.pth", "b=y.pth"] and table == "u2a" and rest == ["--beam_size", "2", "--output_dir", "out"]
    with pytest.raises(PeftError, match="--utt2adapter needs a value"):
        split_routing_args(["--utt2adapter"])
    ckpt = tmp_path / "a.pth"
    ckpt.write_bytes(b"x")
    (tmp_path / "u2a").write_text("u1 a\nu2 base\n")
    for specs, pattern in ((["a"], "NAME=CHECKPOINT"), ([f"base={ckpt}"], "reserved"),
                           ([f"a={ckpt}", f"a={ckpt}"], "twice"), ([f"a={tmp_path / 'none.pth'}"], "not found")):
        with pytest.raises(PeftError, match=pattern):
            Router(specs, tmp_path / "u2a")
    with pytest.raises(PeftError, match="needs --utt2adapter"):
        Router([f"a={ckpt}"], None)
    router = Router([f"a={ckpt}"], tmp_path / "u2a")
    router.check_keys(["u1", "u2"])
    with pytest.raises(PeftError, match="utterance u3 .*has no adapter"):
        router.check_keys(["u1", "u3"], where="data/x")
    (tmp_path / "dup").write_text("u1 a\nu1 base\n")
    with pytest.raises(PeftError, match="dup:2: duplicate id .u1."):
        read_table(tmp_path / "dup")


def test_mixed_sets_route_each_utterance_by_its_set(tmp_path):
    import mix_sets  # local/ is on the path (conftest)

    for name, keys in (("src", ["a1", "a2"]), ("kid", ["b1"])):
        d = tmp_path / name
        d.mkdir()
        for f in ("wav.scp", "text", "utt2spk"):
            (d / f).write_text("".join(f"{k} {f}-{k}\n" for k in keys))
    counts = mix_sets.mix([(tmp_path / "src", "base"), (tmp_path / "kid", "child")], tmp_path / "mixed")
    assert counts == {"base": 2, "child": 1}
    assert (tmp_path / "mixed" / "utt2adapter").read_text() == "a1 base\na2 base\nb1 child\n"
    assert (tmp_path / "mixed" / "text").read_text().splitlines() == ["a1 text-a1", "a2 text-a2", "b1 text-b1"]
    with pytest.raises(SystemExit, match="utterance a1 is in both"):
        mix_sets.mix([(tmp_path / "src", "base"), (tmp_path / "src", "child")], tmp_path / "bad")
    (tmp_path / "kid" / "wav.scp").write_text("b1 x.wav\nb1 y.wav\n")  # one set's own duplicate
    with pytest.raises(SystemExit, match="wav.scp:2: duplicate id 'b1'"):
        mix_sets.mix([(tmp_path / "src", "base"), (tmp_path / "kid", "child")], tmp_path / "bad")


ROUTED_CONFIGS = {
    "child": {"method": "lora", "target_modules": ["feed_forward.w_1", "feed_forward.w_2"], "rank": 4},
    "accent": {"method": "ssvd_o", "target_modules": ["feed_forward.w_1"], "k_in": 4, "k_out": 2, "svd": "full"}}


def two_adapters(model, model_dir: Path, tmp_path: Path, data: Path):
    """A LoRA and an SSVD-O adapter of ``model`` (random trained values), each also merged into a
    stock model directory, and a utt2adapter routing the utterances of ``data`` to child, accent and
    base in turn: ``(adapter specs, {name: model dir}, route)``."""
    import espnet_peft
    from conftest import randomize_trainables

    keys = sorted(read_text(data / "wav.scp"))
    dirs = {"base": model_dir}
    adapters = []
    for i, (name, cfg) in enumerate(ROUTED_CONFIGS.items()):
        wrapped = copy.deepcopy(model)
        espnet_peft.apply_peft(wrapped, cfg)
        randomize_trainables(wrapped, scale=0.5, seed=11 + i)
        torch.save(espnet_peft.peft_state_dict(wrapped), tmp_path / f"{name}.pth")
        adapters.append(f"{name}={tmp_path / f'{name}.pth'}")
        espnet_peft.merge_peft(wrapped)
        d = tmp_path / f"merged_{name}"
        d.mkdir()
        (d / "config.yaml").write_text((model_dir / "config.yaml").read_text())
        torch.save(wrapped.state_dict(), d / "model.pth")
        dirs[name] = d
    route = {k: ("child", "accent", "base")[i % 3] for i, k in enumerate(keys)}
    (tmp_path / "utt2adapter").write_text("".join(f"{k} {v}\n" for k, v in route.items()))
    return adapters, dirs, route


def foreign_adapter(model, path: Path) -> None:
    """The child adapter trained on another pretrained model (one of its weights moved), saved to ``path``."""
    import espnet_peft

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.encoder.encoders[0].feed_forward.w_1.weight.add_(0.1)
    espnet_peft.apply_peft(other, ROUTED_CONFIGS["child"])
    torch.save(espnet_peft.peft_state_dict(other), path)


def test_routed_decoding_equals_each_adapters_merged_model(decode, asr, tmp_path, keep_torch_load):
    """decode.py --adapter NAME=CHECKPOINT --utt2adapter FILE (issue 29 item 2): one model load, each
    utterance decoded with its adapter; every hypothesis equals the one of its adapter's merged
    model, and ``base`` the frozen model's; a missing utterance or a foreign adapter stops the job
    before any decoding, naming it."""
    root, model_dir, model = asr
    data = write_wavs(tmp_path, n=6)
    keys = sorted(read_text(data / "wav.scp"))
    adapters, dirs, route = two_adapters(model, model_dir, tmp_path, data)

    def run(model_dir, out, extra=()):
        common = ["--model_dir", str(model_dir), "--output_dir", str(out), "--data_dir", str(data),
                  "--decode_config", str(NOLM_CONFIG), *extra]
        decode.main(common + ["--job", "1", "--nj", "1"])
        decode.main(common + ["--merge", "--nj", "1"])
        return read_text(out / "set" / "text")

    single = {name: run(d, tmp_path / f"dec_{name}") for name, d in dirs.items()}
    routed = run(model_dir, tmp_path / "dec_routed",
                 [a for spec in adapters for a in ("--adapter", spec)] + ["--utt2adapter", str(tmp_path / "utt2adapter")])
    for k in keys:
        assert routed[k] == single[route[k]][k], (k, route[k])
    assert len({single[n][k] for n in dirs for k in keys}) > len(keys)  # the adapters do decode differently
    # a routed decoding is not taken for the base model's
    assert routed != single["base"]
    # a shared adapter file (safetensors + header) routes the same
    from espnet_peft.adapter_file import save_adapter

    save_adapter(tmp_path / "child.safetensors", torch.load(tmp_path / "child.pth", weights_only=True))
    shared = run(model_dir, tmp_path / "dec_routed_st",
                 ["--adapter", f"child={tmp_path / 'child.safetensors'}", "--adapter", adapters[1],
                  "--utt2adapter", str(tmp_path / "utt2adapter")])
    assert shared == routed
    # a missing utterance, an unknown adapter name, a foreign adapter: stopped before decoding
    (tmp_path / "partial").write_text("".join(f"{k} child\n" for k in keys[1:]))
    with pytest.raises(SystemExit, match=f"utterance {keys[0]} .* has no adapter"):
        decode.main(["--model_dir", str(model_dir), "--output_dir", str(tmp_path / "x"), "--data_dir", str(data),
                     "--decode_config", str(NOLM_CONFIG), "--adapter", adapters[0], "--utt2adapter",
                     str(tmp_path / "partial")])
    (tmp_path / "unknown").write_text("".join(f"{k} kids\n" for k in keys))
    with pytest.raises(SystemExit, match="adapter 'kids'"):
        decode.main(["--model_dir", str(model_dir), "--output_dir", str(tmp_path / "x"), "--data_dir", str(data),
                     "--decode_config", str(NOLM_CONFIG), "--adapter", adapters[0], "--utt2adapter",
                     str(tmp_path / "unknown")])
    foreign_adapter(model, tmp_path / "foreign.pth")
    with pytest.raises(SystemExit, match="'child'.*(another base model|differ)"):
        decode.main(["--model_dir", str(model_dir), "--output_dir", str(tmp_path / "y"), "--data_dir", str(data),
                     "--decode_config", str(NOLM_CONFIG), "--adapter", f"child={tmp_path / 'foreign.pth'}",
                     "--adapter", adapters[1], "--utt2adapter", str(tmp_path / "utt2adapter")])
    assert not (tmp_path / "y" / "set" / "hyp.1").exists()


def test_inference_cli_routes_each_utterance_to_its_adapter(asr, tmp_path, keep_torch_load):
    """espnet_peft.bin.asr_inference --adapter NAME=CHECKPOINT --utt2adapter FILE (issue 29 item 2):
    ESPnet's own decoding loop on one load of the pretrained model, each utterance with its adapter;
    every hypothesis equals stock ESPnet's decoding of that adapter's merged model (``base``: the
    pretrained model); an utterance without an adapter, or an adapter of another pretrained model,
    is refused before any decoding."""
    from espnet2.bin import asr_inference as stock
    from espnet_peft.bin import asr_inference

    root, model_dir, model = asr
    data = write_wavs(tmp_path, n=6)
    keys = sorted(read_text(data / "wav.scp"))
    adapters, dirs, route = two_adapters(model, model_dir, tmp_path, data)
    opts = ["--data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound", "--beam_size", "2",
            "--ctc_weight", "0.5", "--batch_size", "1", "--ngpu", "0"]

    def stock_decode(d: Path, out: Path) -> dict:
        stock.main(["--asr_train_config", str(d / "config.yaml"), "--asr_model_file", str(d / "model.pth"),
                    "--output_dir", str(out), *opts])
        return read_text(out / "1best_recog" / "text")

    base = ["--asr_train_config", str(model_dir / "config.yaml"), "--asr_model_file", str(model_dir / "model.pth")]
    routing = [a for spec in adapters for a in ("--adapter", spec)] + ["--utt2adapter", str(tmp_path / "utt2adapter")]
    asr_inference.main(base + ["--output_dir", str(tmp_path / "routed"), *opts] + routing)
    routed = read_text(tmp_path / "routed" / "1best_recog" / "text")
    single = {name: stock_decode(d, tmp_path / f"stock_{name}") for name, d in dirs.items()}
    assert set(routed) == set(keys)
    for k in keys:
        assert routed[k] == single[route[k]][k], (k, route[k])
    assert len({single[n][k] for n in dirs for k in keys}) > len(keys)  # the adapters do decode differently
    # refused before decoding: an utterance without an adapter, a foreign adapter, a batch of several
    (tmp_path / "partial").write_text("".join(f"{k} child\n" for k in keys[1:]))
    with pytest.raises(SystemExit, match=f"utterance {keys[0]} .* has no adapter"):
        asr_inference.main(base + ["--output_dir", str(tmp_path / "x"), *opts, "--adapter", adapters[0],
                                   "--utt2adapter", str(tmp_path / "partial")])
    foreign_adapter(model, tmp_path / "foreign.pth")
    with pytest.raises(SystemExit, match="'child'.*(another base model|differ)"):
        asr_inference.main(base + ["--output_dir", str(tmp_path / "y"), *opts, "--adapter",
                                   f"child={tmp_path / 'foreign.pth'}", "--adapter", adapters[1],
                                   "--utt2adapter", str(tmp_path / "utt2adapter")])
    assert not (tmp_path / "y" / "1best_recog" / "text").exists()
    with pytest.raises(SystemExit, match="--batch_size 1"):
        asr_inference.main(base + ["--output_dir", str(tmp_path / "z"), *opts[:-4], "--batch_size", "2",
                                   *routing])


def test_s2t_inference_cli_routes_each_utterance_to_its_adapter(owsm, tmp_path, keep_torch_load):
    """The same routing in espnet_peft.bin.s2t_inference (OWSM-shaped S2T model): each utterance's
    hypothesis equals stock ESPnet's decoding of its adapter's merged model."""
    from espnet2.bin import s2t_inference as stock
    from espnet_peft.bin import s2t_inference

    root, model_dir, model, _ = owsm
    data = write_wavs(tmp_path, n=3)
    keys = sorted(read_text(data / "wav.scp"))
    adapters, dirs, route = two_adapters(model, model_dir, tmp_path, data)
    opts = ["--data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound", "--beam_size", "1",
            "--ctc_weight", "0.3", "--batch_size", "1", "--ngpu", "0", "--maxlenratio", "0.05"]

    def stock_decode(d: Path, out: Path) -> dict:
        stock.main(["--s2t_train_config", str(d / "config.yaml"), "--s2t_model_file", str(d / "model.pth"),
                    "--output_dir", str(out), *opts])
        return read_text(out / "1best_recog" / "text")

    s2t_inference.main(["--s2t_train_config", str(model_dir / "config.yaml"), "--s2t_model_file",
                        str(model_dir / "model.pth"), "--output_dir", str(tmp_path / "routed"), *opts]
                       + [a for spec in adapters for a in ("--adapter", spec)]
                       + ["--utt2adapter", str(tmp_path / "utt2adapter")])
    routed = read_text(tmp_path / "routed" / "1best_recog" / "text")
    single = {name: stock_decode(d, tmp_path / f"stock_{name}") for name, d in dirs.items()}
    assert set(routed) == set(keys)
    for k in keys:
        assert routed[k] == single[route[k]][k], (k, route[k])
    # (this random tiny model's output hardly depends on the audio, but it does on the adapter)
    assert any(single[route[k]][k] != single["base"][k] for k in keys), "the routing changes nothing here"
