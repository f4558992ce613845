#!/usr/bin/env python3
"""Base-model decodings shipped beside a foundation model, reused only when all they depend on matches.

Every fresh clone of a recipe decodes the same test sets with the same foundation model and the same
decoding options: the minutes that costs are the same on every machine. ``--export`` keeps such
decodings beside the model (``<model>/decodings/<name>/<set>/``: the hypotheses ``text`` and
``key.json``), keyed by what a decoding depends on, in a form that holds on another clone:

- ``model``: the content of the model's ``config.yaml`` and ``model.pth``;
- ``options``: the decoding options, the LM's files by their content instead of their paths;
- ``data``: every utterance id with the content of its audio file (paths and times differ per clone);
- ``software``: the torch and ESPnet versions and the content of ``local/decode.py`` (a changed
  decoder is a new decoding).

``--reuse`` installs a shared decoding into a recipe's output directory (with the local
``decode_info.json`` of ``local/decode.py``, so that ``--pending`` counts it done) only when every part
of its key equals the current one and its hypotheses are the ones it was exported with; otherwise it
prints which part differs and leaves the set to be decoded. Nothing is trusted by name.

    shared_decodings.py --export --model_dir foundation --output_dir exp/base_decode \\
        --data_dir dump/raw/child_test --decode_config conf/decode.yaml --lm_dir foundation/lm --name decode
    shared_decodings.py --reuse (the same options but --name)     # prints how many sets it installed
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

from espnet_peft.scoring import text_digest
from file_id import file_id, write_text_atomic
import decode

KEY_FILE = "key.json"
PARTS = ("model", "options", "data", "software")


def data_key(data_dir: Path) -> str:
    """The utterance ids of ``data_dir`` with the content of each one's audio file."""
    h = hashlib.sha256()
    for utt, path in sorted(decode.read_scp(data_dir / "wav.scp").items()):
        try:
            h.update(f"{utt} {file_id(path)}\n".encode())
        except OSError:  # (a command or missing audio: never a shared decoding's data)
            return f"unreadable audio of {utt}"
    return h.hexdigest()[:16]


def options_key(opts: dict) -> str:
    portable = {k: (file_id(v) if k in ("lm_train_config", "lm_file") else v) for k, v in opts.items()}
    return hashlib.sha256(json.dumps(portable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def software_key() -> str:
    versions = []
    for dist in ("torch", "espnet"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} absent")
    return " ".join(versions) + f" decode.py {file_id(decode.__file__)}"


def current_key(model_dir: Path, opts: dict, data_dir: Path) -> Dict[str, str]:
    return {"model": "-".join(file_id(f) for f in decode._model_files(model_dir, "model")),
            "options": options_key(opts), "data": data_key(data_dir), "software": software_key()}


def export(args, opts: dict) -> int:
    sig = decode.signature(Path(args.model_dir[0]), opts)
    n = 0
    for d in map(Path, args.data_dir):
        done = Path(args.output_dir[0]) / d.name
        if not decode.finished(done, sig, d):
            sys.exit(f"shared_decodings.py: {done} is not a finished decoding of {d} by {args.model_dir[0]} "
                     f"with {args.decode_config}: decode it first")
        out = Path(args.model_dir[0]) / "decodings" / args.name / d.name
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(done / "text", out / "text")
        info = json.loads((done / "decode_info.json").read_text())
        record = dict(current_key(Path(args.model_dir[0]), opts, d), hypotheses=text_digest(out / "text"),
                      utterances=info.get("utterances"), audio_seconds=info.get("audio_seconds"),
                      decode_cpu_seconds=info.get("decode_cpu_seconds"), decode_config=args.decode_config)
        write_text_atomic(out / KEY_FILE, json.dumps(record, indent=1) + "\n")
        n += 1
    return n


def differs(record: dict, key: Dict[str, str]) -> Optional[str]:
    """The first part of ``key`` the shared record was not made with (None: all match)."""
    for part in PARTS:
        if record.get(part) != key[part]:
            return part
    return None


def reuse(args, opts: dict) -> int:
    model_dir, out_dir = Path(args.model_dir[0]), Path(args.output_dir[0])
    sig = decode.signature(model_dir, opts)
    shared_root = model_dir / "decodings"
    n = 0
    for d in map(Path, args.data_dir):
        if decode.finished(out_dir / d.name, sig, d):
            continue
        candidates = sorted(shared_root.glob(f"*/{d.name}/{KEY_FILE}")) if shared_root.is_dir() else []
        if not candidates:
            continue
        key, why = current_key(model_dir, opts, d), []
        for path in candidates:
            record = json.loads(path.read_text())
            part = differs(record, key)
            if part is None and record.get("hypotheses") != text_digest(path.parent / "text"):
                part = "hypotheses (the shared text was edited)"
            if part is not None:
                why.append(f"{path.parent}: its {part} differs")
                continue
            out = out_dir / d.name
            out.mkdir(parents=True, exist_ok=True)
            decode.write_decoding(out, (path.parent / "text").read_text(encoding="utf-8"), sig, d,
                                  {"utterances": record.get("utterances"), "audio_seconds": record.get("audio_seconds"),
                                   "decode_cpu_seconds": 0.0, "shared_from": str(path.parent)})
            print(f"shared_decodings.py: {d.name}: the shared decoding {path.parent} is reused (model, options, "
                  f"audio and software match)", file=sys.stderr)
            n += 1
            break
        else:
            print(f"shared_decodings.py: {d.name}: decoded here, no shared decoding matches "
                  f"({'; '.join(why)})", file=sys.stderr)
    return n


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--export", action="store_true", help="keep finished decodings beside the model")
    mode.add_argument("--reuse", action="store_true", help="install the matching shared decodings")
    ap.add_argument("--model_dir", action="append", required=True, help="the model (config.yaml + model.pth)")
    ap.add_argument("--output_dir", action="append", required=True, help="its decodings (decode.py's --output_dir)")
    ap.add_argument("--data_dir", action="append", required=True)
    ap.add_argument("--decode_config", default=None)
    ap.add_argument("--lm_dir", default=None)
    ap.add_argument("--name", default=None, help="--export: the folder under <model>/decodings (e.g. decode)")
    args = ap.parse_args(argv)
    if len(args.model_dir) != 1 or len(args.output_dir) != 1:
        ap.error("give one --model_dir and one --output_dir")
    if args.export and not args.name:
        ap.error("--export needs --name")
    args.adapter = []
    opts = decode.decoding_options(args)
    print(export(args, opts) if args.export else reuse(args, opts))


if __name__ == "__main__":
    main()
