#!/usr/bin/env python3
"""Package a trained foundation model for adaptation (recipe stage 9).

Writes ``<out>/{config.yaml, model.pth, bpe.model, tokens.txt, RESULTS.md}``: the n-best
averaged model of the experiment, its config with the tokenizer path pointing into ``<out>``,
and the source/target WER it reached, with the command and the training wall time.
"""
import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True, type=Path)
    ap.add_argument("--bpedir", required=True, type=Path)
    ap.add_argument("--decode_dir", type=Path, default=None)
    ap.add_argument("--checkpoint", default="valid.acc.ave.pth")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    ckpt = args.exp / args.checkpoint
    if not ckpt.exists():
        sys.exit(f"package_foundation.py: {ckpt} not found (did stage 7 finish?)")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((args.exp / "config.yaml").read_text())
    shutil.copy(args.bpedir / "bpe.model", args.out / "bpe.model")
    shutil.copy(args.bpedir / "tokens.txt", args.out / "tokens.txt")
    cfg["bpemodel"] = str(args.out / "bpe.model")
    cfg["token_list"] = [l.rstrip("\n") for l in (args.out / "tokens.txt").read_text().splitlines()]
    state = torch.load(ckpt, map_location="cpu")
    torch.save(state, args.out / "model.pth")
    (args.out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    n = sum(v.numel() for v in state.values() if v.is_floating_point())
    wall = args.exp / "train_wall.json"
    wall_s = json.loads(wall.read_text())["train_wall_seconds"] if wall.exists() else None
    lines = [f"# Foundation model ({time.strftime('%Y-%m-%d')})", "",
             f"- parameters: {n:,}; checkpoint: `{args.checkpoint}` of `{args.exp}`",
             f"- machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
             f"- training wall time: {wall_s / 3600:.2f} h" if wall_s else "- training wall time: unknown",
             f"- epochs: {cfg.get('max_epoch')}, config: see `config.yaml` (training options kept)", ""]
    if args.decode_dir and args.decode_dir.is_dir():
        lines += ["| test set | WER (%) | CER (%) | utterances |", "|---|---:|---:|---:|"]
        for res in sorted(args.decode_dir.glob("*/result.json")):
            r = json.loads(res.read_text())
            lines.append(f"| {res.parent.name} | {r['wer']:.2f} | {r['cer']:.2f} | {r['utterances']} |")
    (args.out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"package_foundation.py: {args.out} ready ({n:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
