#!/usr/bin/env python3
"""Decode data directories with stock ESPnet models (espnet_peft serves only to read the Kaldi tables
and to register the components of a merged model whose method does not export a stock architecture:
its config names an ``espnet_peft_*`` component).

One job decodes its share (``--job J --nj N``) of every ``--data_dir`` with every model
(``--model_dir M --output_dir O`` pairs) in a single process, since the espnet2 import costs
~20 s per process. ``--merge`` then joins the shares into ``<output_dir>/<set>/text`` and
``decode_info.json`` (real-time factor, a signature of what produced it: the model file, the
decoding options and the language model, and the digest of the hypotheses it wrote). A set is
skipped when its ``text`` exists and both still match, so a retrained model, a changed beam, a new
LM or an edited hypotheses file re-decodes (and scoring refuses hypotheses their decoding did not
write: ``espnet_peft.scoring.check_hypotheses``).

Model and LM files are loaded with ``torch.load(weights_only=True)`` (ESPnet's loader asks for
pickle, which runs any code in a crafted file), and audio at another sample rate than the model's
frontend, or with more than one channel, stops the job with the utterance named.

``--lm_dir`` names a language model directory (``config.yaml`` + ``model.pth``, written by
ESPnet's ``lm_train``); it is used when the decoding options set ``lm_weight`` > 0, and a
positive weight without it is an error before anything is decoded.

``ctc_greedy: true`` in the decoding options (e.g. ``conf/decode_nolm.yaml``) decodes with the
acoustic model alone, without beam search or LM: the encoder, the argmax of the CTC posteriors
per frame, repeats collapsed, blanks (and sos/eos) dropped; for S2T (OWSM) models the speech is
padded / cut to the model's fixed length as ``s2t_inference`` does and the special tokens
(``<eng>``, ``<asr>``, timestamps, ...) are removed. It takes no other option than ``dtype``
(beam and LM options would be silently ignored, so they are refused), and it is part of the
signature: a greedy and a beam decoding are never taken for each other.

    decode.py --model_dir foundation --output_dir exp/base_decode \\
              --model_dir exp/x/merged --output_dir exp/x/merged/decode \\
              --data_dir dump/raw/child_test --data_dir dump/raw/source_test \\
              --decode_config conf/decode.yaml --job 1 --nj 2
    decode.py --merge (same pairs and sets) --nj 2
    decode.py --pending (same pairs and sets)     # prints how many (model, set) pairs are not done
    decode.py --model_dir foundation --output_dir exp/routed --data_dir dump/raw/mixed_test \\
              --adapter child=exp/child_ssvd_o/valid.acc.ave.pth --adapter accent=exp/accent_lora/valid.acc.ave.pth \\
              --utt2adapter dump/raw/mixed_test/utt2adapter   # each utterance with its adapter (base: none)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from typing import Optional

import yaml

from espnet_peft.scoring import text_digest
from file_id import file_id, write_text_atomic
from progress import Progress


def shard(keys, job: int, nj: int):
    return [k for i, k in enumerate(sorted(keys)) if i % nj == job - 1]


def read_scp(path: Path):
    """A Kaldi table with the library's one reader (a duplicate utterance id ends the job, naming it)."""
    from espnet_peft.data import DataError, read_table

    try:
        return read_table(path)
    except DataError as e:
        sys.exit(f"decode.py: {e}")


def _model_files(model_dir: Path, what: str):
    cfg, model = model_dir / "config.yaml", model_dir / "model.pth"
    if not (cfg.is_file() and model.is_file()):
        sys.exit(f"decode.py: {what} {model_dir} must hold config.yaml and model.pth")
    return cfg, model


def lm_options(opts: dict, lm_dir) -> dict:
    """The decoding options with the LM's files added when ``lm_weight`` > 0 (else the LM is unused)."""
    if float(opts.get("lm_weight", 0) or 0) <= 0:
        return {k: v for k, v in opts.items() if k not in ("lm_train_config", "lm_file")}
    if "lm_file" in opts:
        return opts
    if not lm_dir:
        sys.exit(f"decode.py: the decoding options set lm_weight {opts['lm_weight']} but no --lm_dir was given")
    cfg, model = _model_files(Path(lm_dir), "language model")
    return dict(opts, lm_train_config=str(cfg), lm_file=str(model))


GREEDY_OPTIONS = ("ctc_greedy", "dtype")  # all a CTC greedy decoding reads


def greedy_options(opts: dict) -> dict:
    """The options with ``ctc_greedy`` checked: true takes only ``GREEDY_OPTIONS``; false is dropped
    (the same beam search as without the key)."""
    if "ctc_greedy" not in opts:
        return opts
    if not isinstance(opts["ctc_greedy"], bool):
        sys.exit(f"decode.py: ctc_greedy must be true or false, got {opts['ctc_greedy']!r}")
    if not opts["ctc_greedy"]:
        return {k: v for k, v in opts.items() if k != "ctc_greedy"}
    other = sorted(set(opts) - set(GREEDY_OPTIONS))
    if other:
        sys.exit(f"decode.py: ctc_greedy: true decodes with the CTC posteriors alone (no beam search, no LM); "
                 f"remove the options it would ignore: {', '.join(other)}")
    return opts


def ctc_collapse(ids, drop) -> list:
    """CTC greedy output of per-frame ids: runs of the same id collapsed to one, then the ids in
    ``drop`` (blank, sos/eos) removed (a blank between two equal ids keeps both)."""
    out, prev = [], None
    for i in ids:
        if i != prev and i not in drop:
            out.append(i)
        prev = i
    return out


def ctc_greedy_ids(model, speech) -> list:
    """Token ids of the CTC greedy decoding of one utterance (1-D tensor) by an ESPnet ASR / S2T model."""
    import torch

    if getattr(model, "ctc", None) is None:
        sys.exit("decode.py: ctc_greedy: the model has no CTC head (trained with ctc_weight 0)")
    lengths = torch.tensor([speech.size(0)], dtype=torch.long, device=speech.device)
    enc, _ = model.encode(speech[None], lengths)
    if isinstance(enc, tuple):  # (output, intermediate CTC outputs)
        enc = enc[0]
    return ctc_collapse(model.ctc.argmax(enc)[0].tolist(), {model.blank_id, model.sos, model.eos})


def _tokens2text(s2t, tokens) -> str:
    return s2t.tokenizer.tokens2text(tokens) if s2t.tokenizer is not None else " ".join(tokens)


def asr_ctc_greedy(s2t, speech) -> str:
    """CTC greedy text of ``speech`` (1-D array) with an ``asr_inference.Speech2Text``'s model."""
    import torch

    x = torch.as_tensor(speech).to(device=s2t.device, dtype=getattr(torch, s2t.dtype))
    return _tokens2text(s2t, s2t.converter.ids2tokens(ctc_greedy_ids(s2t.asr_model, x)))


def s2t_ctc_greedy(s2t, speech) -> str:
    """The same with an ``s2t_inference.Speech2Text`` (OWSM): the speech padded or cut to the
    model's fixed length (as its ``__call__``), special tokens (language, task, timestamps) removed."""
    import torch
    import torch.nn.functional as F

    n = int(s2t.preprocessor_conf["fs"] * s2t.preprocessor_conf["speech_length"])
    x = torch.as_tensor(speech)[:n]
    x = F.pad(x, (0, n - x.size(0))).to(device=s2t.device, dtype=getattr(torch, s2t.dtype))
    tokens = s2t.converter.ids2tokens(ctc_greedy_ids(s2t.s2t_model, x))
    return _tokens2text(s2t, [t for t in tokens if not (t.startswith("<") and t.endswith(">"))])


def signature(model_dir: Path, opts: dict) -> str:
    """What a decoding result depends on: model weights and config, decoding options, LM files."""
    parts = [file_id(f) for f in _model_files(model_dir, "model")]
    parts.append(json.dumps(opts, sort_keys=True, default=str))
    for key in ("lm_train_config", "lm_file"):
        if key in opts:
            parts.append(file_id(Path(opts[key])))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def model_sample_rate(model_dir: Path) -> int:
    """The sample rate the model's frontend assumes (ESPnet's default frontend: 16 kHz)."""
    cfg = yaml.safe_load((model_dir / "config.yaml").read_text()) or {}
    fs = (cfg.get("frontend_conf") or {}).get("fs", 16000)
    if isinstance(fs, str):
        import humanfriendly

        fs = humanfriendly.parse_size(fs)
    return int(fs)


def load_model(model_dir: Path, task: str, opts: dict):
    cfg, model = _model_files(model_dir, "model")
    config = yaml.safe_load(cfg.read_text()) or {}
    if any(isinstance(v, str) and v.startswith("espnet_peft") for v in config.values()):
        # a merged model of non-stock architecture: the method that made it registers its components
        from espnet_peft.methods import register_with_espnet

        register_with_espnet(config)
    opts = dict(opts)
    opts.pop("routing", None)  # (the signature's record of the adapters routed to; see Routing)
    device = opts.pop("device", "cpu")
    greedy = opts.pop("ctc_greedy", False)
    if greedy:  # the model and tokenizer only: a beam of 1 on the CTC scorer, no decoder, no LM
        opts.update(beam_size=1, ctc_weight=1.0, lm_weight=0.0, nbest=1)
    if task == "s2t":
        from espnet2.bin.s2t_inference import Speech2Text

        s2t = Speech2Text(s2t_train_config=str(cfg), s2t_model_file=str(model), device=device, **opts)
        fn = (lambda speech: s2t_ctc_greedy(s2t, speech)) if greedy else (lambda speech: s2t(speech)[0][3])
        fn.model = s2t.s2t_model  # (text without special tokens)
        return fn
    from espnet2.bin.asr_inference import Speech2Text

    s2t = Speech2Text(asr_train_config=str(cfg), asr_model_file=str(model), device=device, **opts)
    if greedy:
        fn = lambda speech: asr_ctc_greedy(s2t, speech)  # noqa: E731
        fn.model = s2t.asr_model
        return fn
    fn = lambda speech: s2t(speech)[0][0]  # noqa: E731
    fn.model = s2t.asr_model
    return fn


class Routing:
    """Per-utterance adapters (``--adapter NAME=CHECKPOINT``, ``--utt2adapter FILE``) through the
    library's :class:`espnet_peft.routing.Router`: one model load, an adapter bank on it, and each
    utterance decoded with its adapter (``base``: the frozen model); every check is made before any
    decoding. Here its errors end the job with the message, and its signature keys the decoding."""

    def __init__(self, adapters, utt2adapter):
        from espnet_peft.routing import Router

        self.router = self._call(Router, adapters, utt2adapter)

    @staticmethod
    def _call(fn, *args):
        from espnet_peft.errors import PeftError

        try:
            return fn(*args)
        except PeftError as e:
            sys.exit(f"decode.py: {e}")

    def check(self, data_dirs) -> None:
        for d in data_dirs:
            self._call(self.router.check_keys, read_scp(Path(d) / "wav.scp"), str(d))

    def signature(self) -> dict:
        return {"adapters": {n: file_id(p) for n, p in sorted(self.router.paths.items())},
                "utt2adapter": file_id(self.router.file)}

    def attach(self, model) -> None:
        self._call(self.router.attach, model)

    def select(self, key: str) -> None:
        self.router.select(key)


def data_signature(data_dir: Path) -> str:
    """What a set's decoding depends on besides the model: its ``wav.scp`` and every audio file's
    size and modification time (a re-synthesised or re-formatted set of the same name is new data)."""
    h = hashlib.sha256()
    scp = Path(data_dir) / "wav.scp"
    if not scp.is_file():
        return "no wav.scp"  # (nothing to decode yet: never a finished decoding's)
    h.update(scp.read_bytes())
    for path in read_scp(scp).values():
        try:
            st = os.stat(path)
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:  # (a command, or missing audio: the decoding itself names it)
            h.update(f"{path}:?\n".encode())
    return h.hexdigest()[:16]


def finished(out: Path, sig: str, data_dir: Optional[Path] = None) -> bool:
    """Decoded with this model signature, and (``data_dir``) of this very data."""
    info = out / "decode_info.json"
    if not ((out / "text").is_file() and info.is_file()):
        return False
    rec = json.loads(info.read_text())
    return (rec.get("signature") == sig and rec.get("hypotheses") == text_digest(out / "text")
            and (data_dir is None or rec.get("data") == data_signature(data_dir)))


def todo(out_dir: str, data_dirs, sig: str):
    return [Path(d) for d in data_dirs if not finished(Path(out_dir) / Path(d).name, sig, Path(d))]


def decoding_options(args) -> dict:
    opts = yaml.safe_load(Path(args.decode_config).read_text()) if args.decode_config else {}
    opts = lm_options(greedy_options(opts or {}), args.lm_dir)
    if getattr(args, "adapter", None):  # routed decodings depend on the adapters and the routing too
        opts["routing"] = Routing(args.adapter, args.utt2adapter).signature()
    return opts


def decode(args) -> None:
    """This job's share of every (model, set) pair still to decode. Every ``torch.load`` meanwhile is
    weights-only: ESPnet's ``build_model_from_file`` passes ``weights_only=False``, and the base model
    of a recipe may come from anywhere (``--foundation_source``)."""
    from espnet_peft.loading import weights_only_loads

    with weights_only_loads():
        decode_share(args)


def decode_share(args) -> None:
    import soundfile
    import torch

    torch.set_num_threads(max(1, args.threads))
    opts = decoding_options(args)
    routing = Routing(args.adapter, args.utt2adapter) if args.adapter else None
    if routing is not None:
        routing.check(args.data_dir)  # every utterance has a known adapter: before any model is loaded
    work = [(m, o, todo(o, args.data_dir, signature(Path(m), opts))) for m, o in zip(args.model_dir, args.output_dir)]
    total = sum(len(shard(read_scp(d / "wav.scp"), args.job, args.nj)) for _, _, sets in work for d in sets)
    progress = Progress(total, "decode.py", f"utterances of job {args.job} of {args.nj}")
    for model_dir, out_dir, sets in work:
        if not sets:
            continue
        run_opts = dict(opts, device=args.device) if args.device else dict(opts)
        recognize = load_model(Path(model_dir), args.task, run_opts)
        if routing is not None:
            routing.attach(recognize.model)  # a foreign adapter is refused here, before any decoding
        fs = model_sample_rate(Path(model_dir))
        for d in sets:
            wav = read_scp(d / "wav.scp")
            out = Path(out_dir) / d.name
            out.mkdir(parents=True, exist_ok=True)
            audio_s = 0.0
            t0 = time.time()
            with open(out / f"hyp.{args.job}", "w", encoding="utf-8") as fh:
                for key in shard(wav, args.job, args.nj):
                    speech, sr = soundfile.read(wav[key], dtype="float32", always_2d=True)
                    if sr != fs or speech.shape[1] != 1:  # the recipe formats to fs mono (stage 3)
                        sys.exit(f"decode.py: {d}: {key}: {wav[key]} is {sr} Hz with {speech.shape[1]} channel(s); "
                                 f"{model_dir} expects {fs} Hz mono (format the data: local/format_data.py)")
                    speech = speech[:, 0]
                    audio_s += len(speech) / sr
                    if routing is not None:
                        routing.select(key)
                    with torch.no_grad():
                        text = recognize(speech)
                    fh.write(f"{key} {text}\n")
                    progress.step(what=f"{Path(model_dir).name}/{d.name}")
            (out / f"info.{args.job}.json").write_text(json.dumps(
                {"audio_seconds": audio_s, "decode_seconds": time.time() - t0}) + "\n")


def merge(args) -> None:
    opts = decoding_options(args)
    for model_dir, out_dir in zip(args.model_dir, args.output_dir):
        sig = signature(Path(model_dir), opts)
        for d in todo(out_dir, args.data_dir, sig):
            out = Path(out_dir) / d.name
            hyps, audio, secs = {}, 0.0, 0.0
            for j in range(1, args.nj + 1):
                part = out / f"hyp.{j}"
                if not part.is_file():
                    sys.exit(f"decode.py: missing {part} (a decoding job failed?)")
                for line in part.read_text(encoding="utf-8").splitlines():
                    k, _, v = line.partition(" ")
                    hyps[k] = v.strip()
                info = json.loads((out / f"info.{j}.json").read_text())
                audio += info["audio_seconds"]
                secs += info["decode_seconds"]
            keys = read_scp(d / "wav.scp")
            if set(hyps) != set(keys):
                sys.exit(f"decode.py: {out}: {len(set(keys) - set(hyps))} utterances were not decoded")
            write_decoding(out, "".join(f"{k} {hyps[k]}\n" for k in sorted(hyps)), sig, d,
                           {"utterances": len(hyps), "audio_seconds": round(audio, 2),
                            "decode_cpu_seconds": round(secs, 2), "rtf": round(secs / audio, 4) if audio else None})


def write_decoding(out: Path, text: str, sig: str, data_dir: Path, info: dict) -> None:
    """A finished decoding of ``data_dir`` in ``out``: the hypotheses ``text`` and ``decode_info.json``
    (``info`` plus the signature, the data's and the hypotheses' digests). The old signature goes first
    and each file is renamed into place: a decoding killed here is never taken for a finished one."""
    (out / "decode_info.json").unlink(missing_ok=True)
    write_text_atomic(out / "text", text)
    write_text_atomic(out / "decode_info.json", json.dumps(
        dict(info, signature=sig, data=data_signature(data_dir), hypotheses=text_digest(out / "text")),
        indent=1) + "\n")


def pending(args) -> int:
    """How many (model, set) pairs still need decoding under the current signature."""
    opts = decoding_options(args)
    return sum(len(todo(o, args.data_dir, signature(Path(m), opts))) for m, o in zip(args.model_dir, args.output_dir))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_dir", action="append", default=[], help="a model (config.yaml + model.pth)")
    ap.add_argument("--output_dir", action="append", required=True, help="one per --model_dir")
    ap.add_argument("--data_dir", action="append", required=True)
    ap.add_argument("--decode_config", default=None)
    ap.add_argument("--lm_dir", default=None, help="language model (config.yaml + model.pth) for lm_weight > 0")
    ap.add_argument("--task", choices=("asr", "s2t"), default="asr")
    ap.add_argument("--job", type=int, default=1)
    ap.add_argument("--nj", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--merge", action="store_true")
    ap.add_argument("--pending", action="store_true", help="print how many (model, set) pairs need decoding")
    ap.add_argument("--adapter", action="append", default=[],
                    help="NAME=CHECKPOINT: an adapter state (peft_state_dict / adapter checkpoint) of the model, "
                         "routed to by --utt2adapter (repeat for several)")
    ap.add_argument("--utt2adapter", default=None,
                    help="Kaldi-style: utterance id -> adapter name (base: the frozen model)")
    args = ap.parse_args(argv)
    if len(args.model_dir) != len(args.output_dir):
        ap.error("give one --output_dir per --model_dir")
    if args.adapter and len(args.model_dir) != 1:
        ap.error("--adapter routes utterances on one model: give one --model_dir (the pretrained model)")
    if args.pending:
        print(pending(args))
    elif args.merge:
        merge(args)
    else:
        decode(args)


if __name__ == "__main__":
    main()
