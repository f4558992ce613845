#!/usr/bin/env python3
"""The adapter bank (``espnet_peft.bank``) on a real ESPnet model, timed in one process.

    .venv/bin/python bench/adapter_bank.py --model egs2/embedded/asr1/foundation \\
        --adapter child=egs2/embedded/asr1/exp/child_ssvd_o/valid.acc.ave.pth \\
        --adapter accent=egs2/embedded/asr1/exp/accent_ssvd_o/valid.acc.ave.pth --seconds 5

Loads the model (``config.yaml`` + ``model.pth``) once, adds every adapter to a bank, and reports
(medians over ``--repeats``; ratios are of this one run):

* switch time: ``activate`` (unmerged) and ``merge`` (merged mode: the originals restored, then
  the next adapter merged in);
* the encoder forward on ``--seconds`` of audio with no adapter, with an adapter unmerged and
  merged (the decode-time overhead of the unmerged forward);
* memory in parameters: the bank (base + each adapter's own tensors + the kept originals while
  merged) against one merged model per adapter.

Or at a benchmark shape (``conf/bench/shapes.yaml``: ``owsm_base``, ``owsm_1b``, ...) with random
weights and ``--n_adapters`` random adapters of one PEFT config (each trained-looking: its trainable
tensors perturbed, seeds differ), since speed and memory depend on shapes only::

    .venv/bin/python bench/adapter_bank.py --shape owsm_base --peft_config conf/peft/ssvd_o.yaml --n_adapters 2

Prints a markdown table; nothing is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from espnet_peft.bank import AdapterBank
from espnet_peft.routing import add_adapter_file, parse_adapter_specs
from ssvd_o_overhead import timed as median_time  # (bench/, beside this script: the median of timed calls)

ROOT = Path(__file__).resolve().parents[1]


def model_and_adapters(args):
    """(model, {name: adapter file or state}, sample rate): a model directory with adapter files, or a
    benchmark shape with random adapter states of ``--peft_config``."""
    import copy

    import espnet_peft

    if args.model is not None:
        from espnet2.tasks.asr import ASRTask

        model, _ = ASRTask.build_model_from_file(args.model / "config.yaml", args.model / "model.pth", "cpu")
        cfg = yaml.safe_load((args.model / "config.yaml").read_text()) or {}
        return model, parse_adapter_specs(args.adapter), int((cfg.get("frontend_conf") or {}).get("fs", 16000))
    from espnet_peft.bench import build_model

    shapes = yaml.safe_load((ROOT / "conf" / "bench" / "shapes.yaml").read_text())
    model = build_model(shapes[args.shape])
    config = yaml.safe_load(args.peft_config.read_text())
    states = {}
    for i in range(args.n_adapters):
        wrapped = copy.deepcopy(model)
        espnet_peft.apply_peft(wrapped, config)
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():  # a trained-looking adapter: every trainable tensor moved off its initial value
            for p in wrapped.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=g) * 0.01)
        states[f"a{i + 1}"] = espnet_peft.peft_state_dict(wrapped)
        del wrapped
    return model, states, 16000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="model dir: config.yaml + model.pth (with --adapter)")
    ap.add_argument("--adapter", action="append", default=[], help="NAME=CHECKPOINT (repeatable)")
    ap.add_argument("--shape", help="or a shape of conf/bench/shapes.yaml (random weights; with --peft_config)")
    ap.add_argument("--peft_config", type=Path, help="--shape: the PEFT config of the random adapters")
    ap.add_argument("--n_adapters", type=int, default=2, help="--shape: how many random adapters")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if (args.model is None) == (args.shape is None) or (args.model is not None and not args.adapter) \
            or (args.shape is not None and args.peft_config is None):
        ap.error("give --model with --adapter NAME=CHECKPOINT, or --shape with --peft_config")
    model, states, fs = model_and_adapters(args)
    model.eval()
    base_params = sum(p.numel() for p in model.parameters())
    bank = AdapterBank(model)
    names = []
    for name, adapter in states.items():
        if isinstance(adapter, str):  # a file, loaded as the decoders load it
            add_adapter_file(bank, name, adapter)
        else:
            bank.add(name, adapter)
        names.append(name)
    speech = torch.randn(1, int(fs * args.seconds)) * 0.1
    lengths = torch.tensor([speech.shape[1]])

    @torch.no_grad()
    def encode():
        model.encode(speech, lengths)

    rows = []
    cycle = iter(range(10 ** 9))
    t_activate = median_time(lambda: bank.activate(names[next(cycle) % len(names)]), 1000)
    bank.activate(None)
    t_base = median_time(encode, args.repeats)
    bank.activate(names[0])
    t_unmerged = median_time(encode, args.repeats)
    t_merge = median_time(lambda: bank.merge(names[next(cycle) % len(names)]), args.repeats)
    bank.merge(names[0])
    t_merged = median_time(encode, args.repeats)
    mem_merged = bank.memory()
    bank.merge(None)
    mem = bank.memory()
    adapters = sum(v for k, v in mem.items() if k.startswith("adapter:"))
    rows.append(("switch, unmerged (`activate`)", f"{t_activate * 1e6:.1f} µs"))
    rows.append(("switch, merged (`merge`: restore + merge the next)", f"{t_merge * 1e3:.1f} ms"))
    rows.append((f"encoder forward, {args.seconds:g} s audio: frozen model", f"{t_base * 1e3:.1f} ms"))
    rows.append(("... an adapter unmerged", f"{t_unmerged * 1e3:.1f} ms ({t_unmerged / t_base:.2f}x)"))
    rows.append(("... an adapter merged", f"{t_merged * 1e3:.1f} ms ({t_merged / t_base:.2f}x)"))
    rows.append((f"memory: bank of {len(names)} adapters (base + adapters)",
                 f"{mem['base'] + adapters:,} parameters (+{mem_merged['kept_for_merge']:,} kept while merged)"))
    rows.append((f"memory: {len(names)} merged models", f"{len(names) * base_params:,} parameters"))
    what = args.model or f"shape {args.shape} (random weights; adapters: {args.peft_config})"
    print(f"model {what} ({base_params:,} parameters), adapters: "
          + ", ".join(f"{n} ({mem['adapter:' + n]:,})" for n in names) + f"; {args.threads} threads\n")
    print("| | |\n|---|---:|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
