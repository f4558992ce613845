#!/usr/bin/env python3
"""Where SSVD-O's step time goes beyond its FLOP bound, on one bench shape.

    .venv/bin/python bench/ssvd_o_overhead.py --shape owsm_base --budget 2% --tokens 400

Builds the bench model of ``--shape`` (conf/bench/shapes.yaml), plans SSVD-O on the bench's
targets, and times, per step, with the same thread count as the bench:

* the cores ``M`` of all adapted layers (Cayley rotations included), forward and backward, against
  ``core_flops``: the part of the step that does not scale with the tokens;
* every adapted layer on ``--tokens`` tokens, forward plus backward (input gradient and ``dM``),
  against the frozen layer's forward plus input gradient on the same tokens, and the FLOP ratio
  ``path_costs`` gives for the path the layer picks;
* a dense ``1024 x 1024`` matmul, for the machine's GEMM rate.

Prints a small table; nothing is written.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import espnet_peft  # noqa: E402
from espnet_peft.bench import TARGETS, build_model, machine_line, machine_speed  # noqa: E402
from espnet_peft.methods.ssvd_o import SubspaceRotationLinear, _SubspaceLinear, core_flops, path_costs  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="owsm_base")
    ap.add_argument("--budget", default="2%")
    ap.add_argument("--method", default="ssvd_o")
    ap.add_argument("--tokens", type=int, default=400,
                    help="tokens per layer call (the bench's encoder layers see 398 at 0.1 B: 2 x 8 s after 4x "
                         "subsampling; 99 at 1 B: 1 x 4 s)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--shapes_file", default=str(ROOT / "conf" / "bench" / "shapes.yaml"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = yaml.safe_load(Path(args.shapes_file).read_text())[args.shape]
    model = build_model(shape)
    espnet_peft.apply_peft(model, {"method": args.method, "target_modules": TARGETS, "budget": args.budget,
                                   "svd": "randomized"})
    layers = [m for m in model.modules() if isinstance(m, SubspaceRotationLinear)]
    for m in layers:
        m.ensure_initialized()
        with torch.no_grad():  # away from the identity, so that no solve is trivially cheap
            for p in (m.ssvd_S_in, m.ssvd_S_out, m.ssvd_delta):
                p.normal_(0, 1e-2)

    # 1. the cores, once per step
    def cores():
        loss = sum(m.core().sum() for m in layers)
        loss.backward()
    t_core = timed(cores, args.repeats)
    f_core = sum(core_flops(m.k_in, m.k_out, m.rotation_kind) for m in layers)

    # 2. the machine's GEMM rate
    speed = machine_speed()
    rate = speed["gemm_gflops"] * 1e9

    # 3. every adapted layer on --tokens tokens, against its frozen layer
    t_ad = t_fr = f_ad = f_fr = 0.0
    paths = {"lowrank": 0, "dense": 0}
    for m in layers:
        x = torch.randn(args.tokens, m.in_features, requires_grad=True)
        g = torch.randn(args.tokens, m.out_features)
        path = m.pick_path(args.tokens, True)
        paths[path] += 1
        m_const = m.core().detach().requires_grad_(True)  # the core is counted in 1.

        def adapted():
            y = _SubspaceLinear.apply(x, m.weight, m.bias, m.ssvd_U, m.ssvd_V, m_const, path == "dense")
            y.backward(g)

        def frozen():
            y = torch.nn.functional.linear(x, m.weight, m.bias)
            y.backward(g)
        t_ad += timed(adapted, args.repeats)
        t_fr += timed(frozen, args.repeats)
        f_fr += 4.0 * args.tokens * m.in_features * m.out_features
        f_ad += path_costs(args.tokens, m.out_features, m.in_features, m.p, True)[path]

    print(f"shape {args.shape}, {args.method} at {args.budget}: {len(layers)} layers "
          f"({paths['dense']} dense, {paths['lowrank']} low-rank at {args.tokens} tokens), "
          f"{torch.get_num_threads()} threads")
    print(f"machine: {machine_line(speed)}\n")
    print("| part | time (ms) | GFLOP | GFLOP/s | time at GEMM rate (ms) |")
    print("|---|---:|---:|---:|---:|")
    rows = [("cores M, fwd+bwd (all layers)", t_core, f_core),
            ("adapted layers, fwd+bwd", t_ad, f_fr + f_ad),
            ("frozen layers, fwd+input grad", t_fr, f_fr)]
    for name, t, f in rows:
        print(f"| {name} | {1e3 * t:.1f} | {f / 1e9:.2f} | {f / t / 1e9:.1f} | {1e3 * f / rate:.1f} |")
    print(f"\nadapted / frozen layers: {t_ad / t_fr:.2f} measured, {(f_fr + f_ad) / f_fr:.2f} by FLOPs; "
          f"cores add {t_core / t_fr:.2f} of the frozen layers' time ({f_core / f_fr:.3f} by FLOPs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
