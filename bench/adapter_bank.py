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

Prints a markdown table; nothing is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_peft.bank import AdapterBank  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ssvd_o_overhead import timed as median_time  # noqa: E402  (the median of timed calls)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="model dir: config.yaml + model.pth")
    ap.add_argument("--adapter", action="append", required=True, help="NAME=CHECKPOINT (repeatable)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from espnet2.tasks.asr import ASRTask

    model, _ = ASRTask.build_model_from_file(args.model / "config.yaml", args.model / "model.pth", "cpu")
    model.eval()
    base_params = sum(p.numel() for p in model.parameters())
    bank = AdapterBank(model)
    names = []
    for spec in args.adapter:
        name, _, path = spec.partition("=")
        frozen = Path(path).parent / "peft_config.yaml"
        bank.add(name, torch.load(path, map_location="cpu", weights_only=True),
                 config=str(frozen) if frozen.is_file() else None)
        names.append(name)
    cfg = yaml.safe_load((args.model / "config.yaml").read_text()) or {}
    fs = int((cfg.get("frontend_conf") or {}).get("fs", 16000))
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
    print(f"model {args.model} ({base_params:,} parameters), adapters: "
          + ", ".join(f"{n} ({mem['adapter:' + n]:,})" for n in names) + f"; {args.threads} threads\n")
    print("| | |\n|---|---:|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
