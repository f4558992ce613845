#!/usr/bin/env python3
"""Package a trained foundation model for adaptation (recipe stage 9).

Writes ``<out>/{config.yaml, model.pth, bpe.model, tokens.txt, RESULTS.md}``: the n-best
averaged model of the experiment, its config with the tokenizer path pointing into ``<out>``,
and the source/target WER it reached, with the command, the epochs averaged, the training wall
time and, for a model trained in rounds (``local/foundation_round.py``; ``--rounds`` its
``round.json``), every round's epochs, wall time and command. With ``--lm_exp``, also
``<out>/lm/{config.yaml, model.pth}``: the language model the decoding options use when they
set ``lm_weight`` > 0.
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


def _wall_hours(exp: Path):
    wall = exp / "train_wall.json"
    return json.loads(wall.read_text())["train_wall_seconds"] / 3600 if wall.exists() else None


def averaged_epochs(exp: Path, checkpoint: str):
    """The epochs ESPnet averaged into ``checkpoint`` (``valid.acc.ave.pth`` -> its n best by
    validation accuracy, read from the run's resume checkpoint), and the number of epochs run."""
    from foundation_round import epoch_scores  # (local/, beside this script)

    target = (exp / checkpoint).resolve().name  # e.g. valid.acc.ave_5best.pth
    parts = target.split(".")
    if not (exp / "checkpoint.pth").is_file() or len(parts) < 4 or not parts[2].startswith("ave_"):
        return None, None
    scores, _ = epoch_scores(exp, criterion=(parts[0], parts[1]))
    n = int(parts[2][len("ave_"):-len("best")])
    return sorted(sorted(scores, key=lambda e: -scores[e])[:n]), max(scores, default=None)


def round_lines(rounds_file: Path) -> list:
    """RESULTS.md lines for a model trained in rounds: one row per round."""
    info = json.loads(rounds_file.read_text())
    lines = ["", f"Trained in {len(info['rounds'])} rounds (`local/foundation_round.py`; each later round resumed "
             "the previous one's run or started from its weights):", "",
             "| round | date | epochs | steps | wall (min) | command |", "|---:|---|---|---:|---:|---|"]
    for r in info["rounds"]:
        epochs = sorted(int(e) for e in r["valid_acc"])
        lines.append(f"| {r['round']} | {r['date']} | {epochs[0]}-{epochs[-1]} | {r['steps']} | "
                     f"{r['train_wall_seconds'] / 60:.1f} | {r['command']} |")
    return lines + [""]


def package_lm(lm_exp: Path, checkpoint: str, out: Path) -> list:
    """Copy the LM (n-best average) into ``out``; returns its RESULTS.md lines."""
    ckpt = lm_exp / checkpoint
    if not ckpt.exists():
        sys.exit(f"package_foundation.py: {ckpt} not found (did the LM training of stage 7 finish?)")
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((lm_exp / "config.yaml").read_text())
    cfg["bpemodel"] = str(out.parent / "bpe.model")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save(state, out / "model.pth")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    n = sum(v.numel() for v in state.values() if v.is_floating_point())
    text = cfg.get("train_data_path_and_name_and_type", [[None]])[0][0]
    info = Path(text).with_name(Path(text).name + ".json") if text else None
    stats = json.loads(info.read_text()) if info and info.is_file() else {}
    wall = _wall_hours(lm_exp)
    return [f"- language model: {cfg.get('lm')} {cfg.get('lm_conf')}, {n:,} parameters, `{checkpoint}` of "
            f"`{lm_exp}`, {cfg.get('max_epoch')} epochs"
            + (f", {wall:.2f} h" if wall else "")
            + (f"; text: {stats['lines']:,} lines / {stats['words']:,} words, none sharing a "
               f"{stats['ngram']}-word sequence with a dev/test sentence" if stats else "")]


def keep_lm(src: Path, out: Path) -> list:
    """Copy a packaged LM unchanged into ``out`` (its tokenizer path pointed at ``out``'s model's);
    returns its RESULTS.md lines."""
    if not (src / "model.pth").is_file() or not (src / "config.yaml").is_file():
        sys.exit(f"package_foundation.py: --lm_from {src} has no config.yaml and model.pth")
    if src.resolve() != out.resolve():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "model.pth", out / "model.pth")
        cfg = yaml.safe_load((src / "config.yaml").read_text())
        cfg["bpemodel"] = str(out.parent / "bpe.model")
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return [f"- language model: kept from `{src}` unchanged (the warm start's; the tokenizer is the same)"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", required=True, type=Path)
    ap.add_argument("--bpedir", required=True, type=Path)
    ap.add_argument("--decode_dir", type=Path, default=None)
    ap.add_argument("--checkpoint", default="valid.acc.ave.pth")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--lm_exp", type=Path, default=None, help="language model experiment (ESPnet lm_train)")
    ap.add_argument("--lm_checkpoint", default="valid.loss.ave.pth")
    ap.add_argument("--lm_from", type=Path, default=None,
                    help="a packaged LM directory (config.yaml, model.pth) kept as it is: the warm start's, whose "
                         "tokenizer the new model keeps")
    ap.add_argument("--decode_config", type=Path, default=None, help="the decoding options of the WER table")
    ap.add_argument("--rounds", type=Path, default=None,
                    help="round.json of a training in rounds (local/foundation_round.py): its history is recorded")
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
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save(state, args.out / "model.pth")
    (args.out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    n = sum(v.numel() for v in state.values() if v.is_floating_point())
    wall_h = _wall_hours(args.exp)
    averaged, ran = averaged_epochs(args.exp, args.checkpoint)
    command = args.exp / "command.txt"
    lines = [f"# Foundation model ({time.strftime('%Y-%m-%d')})", "",
             f"- parameters: {n:,}; checkpoint: `{args.checkpoint}` of `{args.exp}`"
             + (f" (the average of epochs {', '.join(map(str, averaged))})" if averaged else ""),
             f"- machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
             f"- training wall time: {wall_h:.2f} h" if wall_h else "- training wall time: unknown",
             f"- epochs: {ran or cfg.get('max_epoch')}, config: see `config.yaml` (training options kept)"]
    if command.is_file():
        lines.append(f"- command: `{command.read_text().strip()}`")
    if args.rounds:
        if not args.rounds.is_file():
            sys.exit(f"package_foundation.py: --rounds {args.rounds} not found")
        lines += round_lines(args.rounds)
    if args.lm_exp:
        lines += package_lm(args.lm_exp, args.lm_checkpoint, args.out / "lm")
    elif args.lm_from:
        lines += keep_lm(args.lm_from, args.out / "lm")
    elif (args.out / "lm").exists():
        shutil.rmtree(args.out / "lm")  # an older model's LM does not belong to this one
    if args.decode_config and args.decode_config.is_file():
        opts = yaml.safe_load(args.decode_config.read_text()) or {}
        lines.append("- decoding: `" + ", ".join(f"{k}: {v}" for k, v in opts.items()) + "`")
    lines.append("")
    if args.decode_dir and args.decode_dir.is_dir():
        lines += ["| set | WER (%) | CER (%) | utterances |", "|---|---:|---:|---:|"]
        for res in sorted(args.decode_dir.glob("*/result.json")):
            r = json.loads(res.read_text())
            lines.append(f"| {res.parent.name} | {r['wer']:.2f} | {r['cer']:.2f} | {r['utterances']} |")
    (args.out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"package_foundation.py: {args.out} ready ({n:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
