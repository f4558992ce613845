#!/usr/bin/env python3
"""Carry a foundation-model training over to the next round (the next session, machine or job).

A training that cannot finish in one sitting is trained in rounds: each round starts from the best
weights of the previous one (``asr_train --init_param``). This writes those weights, small enough to
keep in the repository: the average of the ``--nbest`` best epochs of ``--exp`` by validation
accuracy (ESPnet's own criterion), in half precision, plus ``round.json`` with the history of every
round (epochs, optimiser steps, validation accuracy per epoch, wall time), and ``train.yaml``: the
training config of the next round, whose learning-rate schedule continues where this round's
stopped (ESPnet's ``warmuplr`` at the total step count so far, reached after a short re-warmup:
the half-precision weights do not carry Adam's moment estimates).

    foundation_round.py --exp exp/foundation --config conf/train_foundation.yaml --out foundation/round

Works on a finished or an interrupted run (it reads the epochs ESPnet recorded in
``checkpoint.pth``). A round that resumed the previous round's run (``--resume true`` on a machine
that kept ``exp/``: Adam's moments and the schedule carry over) is recognised by the previous
round's epochs in it, and only the epochs, steps and wall time after them are counted as its own.
On a new machine the next round runs, for example,

    run.sh --pretrain true --stage 1 --stop_stage 7 --foundation_config foundation/round/train.yaml \\
        --foundation_args "--init_param foundation/round/model.pth"

Only one round file is kept (overwritten each round); delete it when the final model ships.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import yaml

REWARMUP_STEPS = 300  # Adam's moments start from zero again in every round


def epoch_scores(exp: Path, criterion=("valid", "acc")) -> Tuple[Dict[int, float], int]:
    """``{epoch: validation accuracy}`` of every epoch ESPnet finished in ``exp``, and the number
    of optimiser steps taken by the end of the last one."""
    ckpt = exp / "checkpoint.pth"
    if not ckpt.is_file():
        raise SystemExit(f"foundation_round.py: {ckpt} not found: no finished epoch in {exp}")
    # ESPnet's own resume checkpoint (it pickles its Reporter): written by our training run
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    stats = state["reporter"]["stats"]  # Reporter.state_dict(): {epoch: {"valid": {"acc": ...}}}
    scores = {int(e): float(stats[e][criterion[0]][criterion[1]]) for e in sorted(stats)
              if criterion[1] in stats[e].get(criterion[0], {})}
    schedulers = [s for s in state.get("schedulers", []) if s]
    steps = int(schedulers[0]["last_epoch"]) if schedulers else 0
    return scores, steps


def base_schedule(config: dict) -> Optional[dict]:
    """The warmuplr of a training config, if it runs one."""
    if config.get("scheduler") != "warmuplr":
        return None
    return {"lr": float(config["optim_conf"]["lr"]),
            "warmup_steps": int((config.get("scheduler_conf") or {}).get("warmup_steps", 25000))}


def warmuplr(step: float, lr: float, warmup: float) -> float:
    """ESPnet's WarmupLR at ``step``: linear warm-up to ``lr``, then ``lr * sqrt(warmup / step)``."""
    step = max(step, 1.0)
    return lr * warmup ** 0.5 * min(step ** -0.5, step * warmup ** -1.5)


def next_round_config(config: dict, steps_done: int, horizon: int, schedule: Optional[dict] = None) -> dict:
    """``config`` with a schedule that continues a ``warmuplr`` run after ``steps_done`` steps.

    ``schedule`` (``{"lr", "warmup_steps"}``) is the first round's warmuplr; by default the one of
    ``config`` (later rounds run the piecewise schedule this writes, so they pass the first one's).

    ESPnet's piecewise-linear warm-up interpolates through the listed points and then decays as
    ``lr * sqrt(last point / step)``: the points follow the original curve from ``steps_done`` on
    (after a re-warmup of ``REWARMUP_STEPS``) for ``horizon`` steps, the optimiser's ``lr`` is the
    curve's value there; past the horizon the rate keeps decaying, as ``sqrt(horizon / step)``
    (faster than the original would): lay the horizon out beyond the epochs the round will run.
    """
    if schedule is None:
        if config.get("scheduler") != "warmuplr":
            return config  # another schedule: the next round restarts it
        schedule = base_schedule(config)
    lr, warmup = float(schedule["lr"]), float(schedule["warmup_steps"])
    points = [0, REWARMUP_STEPS] + [int(x) for x in np.linspace(REWARMUP_STEPS, horizon, 9)[1:]]
    out = dict(config)
    out["optim_conf"] = dict(config["optim_conf"], lr=float(warmuplr(steps_done + horizon, lr, warmup)))
    out["scheduler"] = "piecewiselinearwarmuplr"
    out["scheduler_conf"] = {"warmup_steps_list": points,
                             "warmup_lr_list": [0.0] + [float(warmuplr(steps_done + s, lr, warmup)) for s in points[1:]]}
    return out


def average(files: List[Path]) -> Dict[str, torch.Tensor]:
    """The element-wise mean of state dicts (integer buffers, e.g. counters, from the last file)."""
    states = [torch.load(f, map_location="cpu", weights_only=True) for f in files]
    out = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            out[key] = sum(s[key].double() for s in states) / len(states)
        else:
            out[key] = last
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp", required=True, type=Path, help="the ESPnet training directory of this round")
    ap.add_argument("--out", required=True, type=Path, help="directory of model.pth + round.json")
    ap.add_argument("--nbest", type=int, default=3, help="how many best epochs to average")
    ap.add_argument("--config", type=Path, required=True,
                    help="the training config of the first round (the next round's config derives from it)")
    ap.add_argument("--horizon_epochs", type=int, default=20, help="epochs the next schedule is laid out for")
    ap.add_argument("--command", default="", help="the command of this round (recorded)")
    args = ap.parse_args(argv)
    scores, steps = epoch_scores(args.exp)
    kept = {e: a for e, a in scores.items() if (args.exp / f"{e}epoch.pth").is_file()}
    if not kept:
        raise SystemExit(f"foundation_round.py: no Nepoch.pth of a scored epoch in {args.exp}")
    best = sorted(kept, key=lambda e: -kept[e])[: args.nbest]
    state = average([args.exp / f"{e}epoch.pth" for e in sorted(best)])
    info_file = args.out / "round.json"
    previous = json.loads(info_file.read_text()) if info_file.is_file() else {}
    history = previous.get("rounds", [])
    wall = args.exp / "train_wall.json"
    run_wall = json.loads(wall.read_text())["train_wall_seconds"] if wall.is_file() else None
    wall_s = run_wall
    # a round that resumed the previous round's run (ESPnet --resume, on a machine that kept exp/)
    # finds that round's epochs and steps already in the run: only what came after is this round's
    last = history[-1] if history else None
    resumed = bool(last) and all(int(e) in scores and round(scores[int(e)], 4) == a for e, a in last["valid_acc"].items())
    if resumed:
        if max(scores) <= max(map(int, last["valid_acc"])):
            raise SystemExit(f"foundation_round.py: {args.exp} has no epoch after round {last['round']}'s")
        done = last.get("run_steps", last["steps"])
        this = {e: a for e, a in scores.items() if e > max(map(int, last["valid_acc"]))}
        run_steps, steps = steps, steps - done
        if wall_s is not None:  # train_wall.json adds up every training of the run
            wall_s -= last.get("run_wall_seconds", last["train_wall_seconds"] or 0)
    else:
        this, run_steps = scores, steps
    steps_total = sum(r["steps"] for r in history) + steps
    history.append({
        "round": len(history) + 1, "date": time.strftime("%Y-%m-%d %H:%M"),
        "epochs": len(this), "valid_acc": {str(e): round(a, 4) for e, a in this.items()},
        "steps": steps, "averaged_epochs": sorted(best), "command": args.command, "resumed": resumed,
        "train_wall_seconds": wall_s, "run_steps": run_steps,
        "run_wall_seconds": run_wall,
    })
    config = yaml.safe_load(args.config.read_text())
    ran = args.exp / "config.yaml"  # the schedule this round actually ran (command-line overrides included)
    if ran.is_file():
        effective = yaml.safe_load(ran.read_text())
        config.update({k: effective[k] for k in ("optim", "optim_conf", "scheduler", "scheduler_conf") if k in effective})
    schedule = previous.get("schedule") or base_schedule(config)
    info = {"model": "model.pth", "dtype": "float16", "epochs_total": sum(r["epochs"] for r in history),
            "steps_total": steps_total, "schedule": schedule, "rounds": history}
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "model.pth.tmp"
    torch.save(half, tmp)
    tmp.replace(args.out / "model.pth")
    info_file.write_text(json.dumps(info, indent=2) + "\n")
    steps_per_epoch = max(1, steps // max(1, len(scores)))
    nxt = next_round_config(config, steps_total, args.horizon_epochs * steps_per_epoch, schedule)
    header = (f"# Round {len(history) + 1} of the foundation training: {args.config} with the schedule continued\n"
              f"# after {steps_total} steps (written by local/foundation_round.py; start it with\n"
              f"# --init_param {args.out / 'model.pth'}).\n")
    (args.out / "train.yaml").write_text(header + yaml.safe_dump(nxt, sort_keys=False))
    size = (args.out / "model.pth").stat().st_size / 2 ** 20
    print(f"foundation_round.py: round {len(history)}: epochs {sorted(best)} of {len(scores)} averaged "
          f"(valid acc {', '.join(f'{kept[e]:.4f}' for e in sorted(best))}) -> {args.out / 'model.pth'} "
          f"({size:.1f} MiB, float16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
