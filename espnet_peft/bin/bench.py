#!/usr/bin/env python3
"""Performance benchmark: step time, peak memory, initialisation and merged-inference time of
every method on real ESPnet models, against the frozen-base floor, each method's own FLOP
lower bound, LoRA, and (when ``peft`` is installed) HF PEFT's LoRA and DoRA.

    python -m espnet_peft.bin.bench --shapes embedded,owsm_base --budget 1% --out bench_cpu
    python -m espnet_peft.bin.bench --shapes tiny --repeats 2 --out /tmp/bench   # smoke run

Every (shape, method) runs in its own process (clean memory readings); the driver writes
``bench.json`` and ``bench.md`` (medians, ratios to the floor, to the method's own bound and to
LoRA). Runs on the CPU, or on a GPU with ``--device cuda``; never needs one.

Lower bounds (extra FLOPs over the frozen base, per adapted ``d_out x d_in`` matrix that sees
``T`` tokens; the floor itself is a forward plus the backward through activations, measured with
torch's FLOP counter on the same input):

* LoRA / PiSSA, rank r: ``6 T r (d_in + d_out)`` (branch forward, its input gradient, dA and dB);
* DoRA: LoRA's + ``2 d_out d_in r`` (the row norm of ``W + s B A`` through ``W A^T``) + ``4 T d_out``;
* SSVD / SSVD-O, ``p = max(k_in, k_out)`` directions: the ``p x p`` gradient ``(G U_p)^T (X V_p)``
  needs the activations and the output gradients projected onto ``p`` directions. The cheaper of
  two ways to do all of it:
  low-rank, ``4 T p (d_in + d_out) + 6 T p^2`` (the branch ``((X V_p) M) U_p^T`` forward, ``G U_p``,
  ``dM`` and the branch's input gradient ``((G U_p) M^T) V_p^T`` backward); or dense,
  ``2 T p (d_in + d_out) + 2 T p^2 + 2 d_out p (p + d_in)`` (the two projections and ``dM`` only,
  the forward and the input gradient going through ``W + U_p M V_p^T`` formed once). At
  ``T = 2000``, ``d = 1024``, ``p = 0.4 d`` the dense way is the cheaper, about 1.6x the floor.
  (Our layer picks its path by the same two costs, except that its dense path forms the delta a
  second time in backward rather than keep a ``d_out x d_in`` matrix alive per layer: the bound
  counts the delta once.) Plus, once per step and independent of ``T``, the core ``M`` with its Cayley
  rotations: ``6 k^3`` per rotation (the inverse of ``I - S`` and its backward) and ``6 p^3`` for
  ``R_out diag R_in`` (``ssvd_o.core_flops``); at the 1 B shape's batch of one 4 s utterance
  (``T`` about 100) this is some 8% of the floor, at realistic batches it vanishes;
* full fine-tuning: the weight gradients ``2 T d_out d_in`` of every linear layer;
* HFF has no bound relative to this floor: nothing back-propagates through its frozen encoder,
  so it is expected *below* the floor (its column shows the ratio; its bound column is left out).

A method's bound is the floor's step time scaled by ``(floor FLOPs + extra FLOPs) / floor FLOPs``.
The floor it is scaled from is measured *beside the method*: its worker process also builds a frozen
copy of the base model and steps the two alternately (ABBA order), and every ratio is the median of
the per-pair ratios. On a shared VM the floor alone moved by up to 25% from one process to the
next, more than the gaps being measured; the pairs cancel that drift (``--no-paired`` restores the
old cross-process ratios).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Every linear layer of the encoder and decoder blocks; the output layer is left out (on a 50k
# vocabulary one LoRA rank there costs 50,384 parameters, more than a 1% budget gives one module).
TARGETS = ["*attn.linear_q", "*attn.linear_k", "*attn.linear_v", "*attn.linear_out", "feed_forward*.w_1",
           "feed_forward*.w_2", "channel_proj1.0", "channel_proj2", "merge_proj"]
METHODS = ["floor", "full", "lora", "dora", "pissa", "ssvd", "ssvd_o", "ssvd_rebuild", "hff", "hf_lora", "hf_dora"]
# bench rows that run another implementation of one of our methods, and that method
REFERENCE_OF = {"ssvd_rebuild": "ssvd", "hf_lora": "lora", "hf_dora": "dora"}


# --------------------------------------------------------------------------- models
def build_model(shape: Dict, seed: int = 0):
    """An ESPnetASRModel of the given shape, built from ESPnet's classes (random weights)."""
    import torch
    from espnet2.asr.ctc import CTC
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.asr.frontend.default import DefaultFrontend
    from espnet2.layers.utterance_mvn import UtteranceMVN

    torch.manual_seed(seed)
    vocab = int(shape["vocab"])
    frontend = DefaultFrontend(n_fft=512, win_length=400, hop_length=160, n_mels=80)
    encoder = EBranchformerEncoder(input_size=80, **shape["encoder_conf"])
    decoder = TransformerDecoder(vocab_size=vocab, encoder_output_size=encoder.output_size(), **shape["decoder_conf"])
    ctc = CTC(odim=vocab, encoder_output_size=encoder.output_size())
    tokens = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    return ESPnetASRModel(vocab_size=vocab, token_list=tokens, frontend=frontend, specaug=None,
                          normalize=UtteranceMVN(), preencoder=None, encoder=encoder, postencoder=None,
                          decoder=decoder, ctc=ctc, joint_network=None, ctc_weight=0.3, lsm_weight=0.1)


def batch(shape: Dict, n: int, seconds: float, device: str, seed: int = 1):
    import torch

    g = torch.Generator().manual_seed(seed)
    samples = int(seconds * 16000)
    speech = (torch.randn(n, samples, generator=g) * 0.1).to(device)
    lens = torch.full((n,), samples, dtype=torch.long, device=device)
    tl = max(2, int(seconds * 3))
    text = torch.randint(3, int(shape["vocab"]) - 2, (n, tl), generator=g).to(device)
    tlens = torch.full((n,), tl, dtype=torch.long, device=device)
    return speech, lens, text, tlens


# --------------------------------------------------------------------------- the rebuild reference
def rebuild_ssvd(model, plan) -> None:
    """Replace our SSVD layers by the rebuild-from-factors implementation of the same k (the
    public ESPnet pull request's approach): each forward forms ``W' = W + U (M) V^T`` densely and
    back-propagates through it."""
    import torch
    from torch import nn

    from espnet_peft.methods.ssvd_o import SubspaceRotationLinear

    class RebuildLinear(nn.Module):
        def __init__(self, layer: SubspaceRotationLinear):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            w = self.layer.weight + self.layer.ssvd_U @ self.layer.core() @ self.layer.ssvd_V.t()
            return nn.functional.linear(x, w, self.layer.bias)

    for name, m in list(model.named_modules()):
        if isinstance(m, SubspaceRotationLinear):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, RebuildLinear(m))


def hf_inject(model, lora_plan, use_dora: bool) -> None:
    """HF PEFT's LoRA / DoRA on the same modules with the same ranks as our plan."""
    from peft import LoraConfig, inject_adapter_in_model

    names = [r.name for r in lora_plan.rows]
    ranks = {n: r.hyper["r"] for n, r in zip(names, lora_plan.rows)}
    cfg = LoraConfig(target_modules=names, r=max(ranks.values()), lora_alpha=max(ranks.values()),
                     rank_pattern={f"^{n}$": ranks[n] for n in names},
                     alpha_pattern={f"^{n}$": ranks[n] for n in names}, use_dora=use_dora)
    for p in model.parameters():
        p.requires_grad_(False)
    inject_adapter_in_model(cfg, model)


# --------------------------------------------------------------------------- one measurement
def peak_memory_mb(device: str) -> float:
    """The process's peak so far: allocated GPU memory, or the CPU's peak resident set."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def give_back_freed_memory() -> bool:
    """glibc's ``malloc_trim(0)``: return freed heap memory to the kernel. Without it, memory that
    initialisation freed (PiSSA's replaced weights, an SVD's workspace) can stay resident and be
    charged to training: PiSSA read 8.9 GB on the 1 B shape against LoRA's 6.1 GB that way."""
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


class StepPeakMemory:
    """Peak memory of the code run inside the ``with`` block only, so that what initialisation
    needed (an SVD's workspace, say) is not charged to training. On a GPU: the allocator's peak
    after a reset. On Linux: the kernel's peak resident set (``VmHWM``) after resetting it through
    ``/proc/self/clear_refs``; where that is refused, a thread samples the resident set every
    ``interval`` seconds (torch releases the GIL in its kernels, and large tensors are mapped and
    unmapped individually, so the samples follow the live tensors)."""

    def __init__(self, device: str, interval: float = 0.0005, sample: bool = False):
        self.device, self.interval, self.sample, self.peak_mb, self.how = device, interval, sample, 0.0, ""

    @staticmethod
    def _rss_mb() -> float:  # /proc/self/statm: one line of page counts, cheap enough to poll
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    @staticmethod
    def _status_mb(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise OSError(f"{key} not in /proc/self/status")

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.how = "cuda"
            return self
        give_back_freed_memory()  # what initialisation freed must not stay resident and be counted
        if not self.sample:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
                self.how = "vmhwm"
                return self
            except OSError:
                pass
        try:
            self.peak_mb = self._rss_mb()
        except OSError:
            self.how = "process"  # no procfs: the process's peak, initialisation included
            return self
        import threading

        self.how = "sampled"
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak_mb = max(self.peak_mb, self._rss_mb())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.how == "vmhwm":
            self.peak_mb = self._status_mb("VmHWM")
        elif self.how == "sampled":
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self._rss_mb())
        else:
            self.peak_mb = peak_memory_mb(self.device)
        return False


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker(args) -> Dict:
    import torch

    import espnet_peft

    torch.set_num_threads(args.threads or torch.get_num_threads())
    shapes = yaml.safe_load(Path(args.shapes_file).read_text())
    shape = shapes[args.shape]
    method = args.method
    device = args.device
    model = build_model(shape).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    out = {"shape": args.shape, "method": method, "model_params": n_params, "device": device,
           "threads": torch.get_num_threads()}
    peft_method = REFERENCE_OF.get(method, method)
    if method.startswith("hf_"):
        import peft  # noqa: F401  (its import time is not initialisation)
    t0 = time.perf_counter()
    plan = None
    if method == "floor":
        for p in model.parameters():
            p.requires_grad_(False)
    elif peft_method == "full":
        plan = espnet_peft.apply_peft(model, {"method": "full", "target_modules": ["encoder", "decoder", "ctc"]})
    elif peft_method == "hff":
        plan = espnet_peft.apply_peft(model, {"method": "hff", "target_modules": ["encoder"], "budget": args.budget})
    else:
        cfg = {"method": peft_method, "target_modules": TARGETS, "budget": args.budget}
        if peft_method == "pissa":
            cfg.update(svd=args.pissa_svd)
        if peft_method in ("ssvd", "ssvd_o"):
            cfg.update(svd=args.ssvd_svd)
        if method.startswith("hf_"):
            plan = espnet_peft.plan_peft(model, cfg)
            hf_inject(model, plan, use_dora=method == "hf_dora")
        else:
            plan = espnet_peft.apply_peft(model, cfg)
            if method == "ssvd_rebuild":
                rebuild_ssvd(model, plan)
    sync(device)
    out["init_seconds"] = time.perf_counter() - t0
    out["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if plan is not None:
        out["plan"] = [r.as_dict() for r in plan.rows]
    out["init_peak_memory_mb"] = peak_memory_mb(device)  # the process's peak up to here
    if args.init_only:  # initialisation cost only (SVD full vs randomized vs Gram at large shapes)
        return out
    speech, lens, text, tlens = batch(shape, args.batch, args.seconds, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4) if params else None
    model.train()

    def train_step(net, opt):
        def step():
            x = speech.clone().requires_grad_(True)  # the floor back-propagates through activations
            loss, _, _ = net(x, lens, text, tlens)
            loss.backward()
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)
            sync(device)
        return step

    def infer_step(net):
        def step():
            with torch.no_grad():
                net(speech, lens, text, tlens)
            sync(device)
        return step

    step = train_step(model, opt)

    # 1. training memory, over untimed steps (at least two: the optimizer's state exists from the
    # second step's forward on; the fallback sampler is a busy thread that would slow a timed step)
    with StepPeakMemory(device, sample=args.memory == "sampled") as mem:
        for _ in range(max(2, args.warmup)):
            step()
    out["peak_memory_mb"], out["peak_memory_how"] = mem.peak_mb, mem.how
    if method == "floor":  # token counts per linear layer and the FLOPs of the floor step
        from torch.utils.flop_counter import FlopCounterMode

        tokens: Dict[str, int] = {}
        hooks = [m.register_forward_hook(lambda m, i, o, n=n: tokens.__setitem__(n, tokens.get(n, 0) + i[0].numel() // i[0].shape[-1]))
                 for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        with FlopCounterMode(display=False) as fc:
            step()
        for h in hooks:
            h.remove()
        out["floor_flops"] = fc.get_total_flops()
        out["tokens"] = tokens
        out["linear_shapes"] = {n: list(m.weight.shape) for n, m in model.named_modules()
                                if isinstance(m, torch.nn.Linear)}
    # 2. time, with the allocator keeping what it frees (after the memory reading, which it would inflate)
    out["allocator"] = keep_freed_memory(device)
    # The floor again, in this process: a frozen copy of the base model (same weights) stepped in
    # alternation with the method, so that the ratio does not carry the drift between processes
    # (on a shared VM the floor alone moved by up to 25% from one process to the next).
    floor_model = None
    if args.paired and method != "floor":
        floor_model = build_model(shape).to(device)
        for p in floor_model.parameters():
            p.requires_grad_(False)
        floor_model.train()
        fl, times = paired(train_step(floor_model, None), step, args.repeats)
        out["paired"] = {"floor_seconds": fl, "step_seconds": times,
                         "ratio": statistics.median(b / a for a, b in zip(fl, times))}
    else:
        step()  # untimed: the first step after the allocator change fills its heap
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    out["step_seconds"] = times
    out["step_median"] = statistics.median(times)
    # merged inference (forward only, no gradient) against the unadapted model's
    if method in ("floor", "lora", "dora", "pissa", "ssvd", "ssvd_o"):
        if method != "floor":
            espnet_peft.merge_peft(model)
        model.eval()
        infer = infer_step(model)
        inf = []
        for _ in range(max(2, args.repeats)):
            t = time.perf_counter()
            infer()
            inf.append(time.perf_counter() - t)
        out["infer_median"] = statistics.median(inf)
        if floor_model is not None:
            floor_model.eval()
            fl, me = paired(infer_step(floor_model), infer, max(2, args.repeats))
            out["paired"]["infer_ratio"] = statistics.median(b / a for a, b in zip(fl, me))
    return out


def keep_freed_memory(device: str) -> str:
    """On the CPU, stop glibc from handing freed activation memory back to the kernel after every
    step (and faulting it in again on the next): on 2 cores that was 20-35% system time and most
    of the step-to-step noise (0.1 B LoRA worker: 22.6 s of system time against 5.1 s, steps
    15-20% faster, the same in every method). Training scripts get the same with jemalloc or
    tcmalloc. Returns what was set, for the JSON."""
    if not device.startswith("cpu"):
        return "device allocator"
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, (1 << 31) - 1) \
            and libc.mallopt(m_top_pad, 1 << 30)
    except (OSError, AttributeError):
        ok = False
    return "glibc, freed memory kept (mmap threshold 32 MB, no trim)" if ok else "default"


def paired(floor, method, n: int):
    """Time ``floor`` and ``method`` alternately, ``n`` pairs after one untimed call of each; the
    order inside a pair alternates too (ABBA), so neither side always runs on a warmer cache."""
    floor()
    method()
    times = ([], [])
    for i in range(n):
        order = ((0, floor), (1, method)) if i % 2 == 0 else ((1, method), (0, floor))
        for side, fn in order:
            t = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - t)
    return times


# --------------------------------------------------------------------------- bounds and report
def extra_flops(method: str, plan: Optional[List[Dict]], tokens: Dict[str, int], shapes: Dict[str, List[int]]) -> float:
    if method in ("floor", "hff"):
        return 0.0
    if method == "full":
        return float(sum(2 * tokens.get(n, 0) * s[0] * s[1] for n, s in shapes.items()))
    from espnet_peft.methods.ssvd_o import core_flops

    total = 0.0
    base = REFERENCE_OF.get(method, method)
    for row in plan or []:
        d_out, d_in = row["shape"]
        t = tokens.get(row["name"], 0)
        h = row["hyper"]
        if base in ("lora", "pissa", "dora"):
            r = h["r"]
            total += 6 * t * r * (d_in + d_out)
            if base == "dora":
                total += 2 * d_out * d_in * r + 4 * t * d_out
        elif base in ("ssvd", "ssvd_o"):
            k_in, k_out = h.get("k_in", h.get("k", 0)), h.get("k_out", 0)
            p = max(k_in, k_out)
            lowrank = 4 * t * p * (d_in + d_out) + 6 * t * p * p
            dense = 2 * t * p * (d_in + d_out) + 2 * t * p * p + 2 * d_out * p * (p + d_in)
            total += min(lowrank, dense)
            total += core_flops(k_in, k_out)
    return total


def floor_ratio(row: Dict, floor: Dict) -> float:
    """A method's step over the floor's: the median of its in-process pairs when it has them,
    else its median over the floor row's (two processes)."""
    if row is floor:
        return 1.0
    if "paired" in row:
        return row["paired"]["ratio"]
    return row["step_median"] / floor["step_median"]


def report(results: List[Dict], args) -> str:
    by_shape: Dict[str, Dict[str, Dict]] = {}
    for r in results:
        by_shape.setdefault(r["shape"], {})[r["method"]] = r
    svd = f"SVD initialisation: PiSSA {args.pissa_svd}, SSVD / SSVD-O {args.ssvd_svd}."
    init_mem = "the process's peak through building the model and initialising the method"
    head = [f"# Benchmark ({time.strftime('%Y-%m-%d')})", "",
            f"Command: `python -m espnet_peft.bin.bench {' '.join(args.argv)}`", ""]
    if args.init_only:
        lines = head + [f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, device {args.device}; initialisation "
                        f"only, each method in its own process: building the model is not timed, planning and "
                        f"initialising the method are; budget {args.budget}. {svd} Init peak mem: {init_mem}.", ""]
    else:
        lines = head + [
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, device {args.device}; medians of "
             f"{args.repeats} steps after {args.warmup} warm-up; batch {args.batch} x {args.seconds:g} s; "
             f"budget {args.budget}. "
             + (f"Ratios to the floor (and to the bound and LoRA, which derive from them): the median over "
                f"{args.repeats} pairs of the method's step and a frozen base model's step taken in alternation in "
                f"the method's own process (*floor beside it* is the median of those floor steps; the floor row's "
                f"own process may differ by the drift between processes); merged inference likewise. "
                if getattr(args, "paired", False) else "Ratios: medians over the floor row's, measured in another process. ")
             + f"Own bound: the floor scaled by the method's FLOP ratio (see the module docstring). "
             f"Steps are timed with the allocator keeping freed memory (see keep_freed_memory). "
             f"Train peak mem: the peak over max(2, warm-up) untimed steps only (the kernel's peak resident set reset "
             f"after initialisation, or the GPU allocator's peak); init peak mem: {init_mem}. {svd}",
             ""]
    for shape, rows in by_shape.items():
        if args.init_only:
            lines += [f"## {shape}: initialisation", "", "| method | trainable | init (s) | init peak mem (MB) |",
                      "|---|---:|---:|---:|"]
            for m in METHODS:
                r = rows.get(m)
                if r is not None:
                    lines.append(f"| {m} | {r['error'][:80]} | | |" if "error" in r else
                                 f"| {m} | {r['trainable']:,} | {r['init_seconds']:.2f} | {r['init_peak_memory_mb']:.0f} |")
            lines.append("")
            continue
        floor = rows.get("floor")
        if not floor:
            continue
        ff = floor["floor_flops"]
        lora = rows.get("lora")
        lora = lora if lora and "error" not in lora else None  # a failed LoRA run leaves the column empty
        lines += [f"## {shape} ({floor['model_params'] / 1e6:.1f} M parameters)", "",
                  "| method | trainable | step (s) | floor beside it (s) | / floor | / own bound | / LoRA | "
                  "train peak mem (MB) | / floor | init (s) | init peak mem (MB) | merged infer / base |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lora_ratio = floor_ratio(lora, floor) if lora else float("nan")
        for m in METHODS:
            r = rows.get(m)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"| {m} | | | | | | | | | | | {r['error'][:80]} |")
                continue
            ratio = floor_ratio(r, floor)
            own = (ff + extra_flops(m, r.get("plan"), floor["tokens"], floor["linear_shapes"])) / ff
            r["bound_ratio"] = ratio / own  # measured step / (its floor x the FLOP ratio)
            pair = r.get("paired", {})
            beside = statistics.median(pair["floor_seconds"]) if pair else floor["step_median"]
            infer = pair.get("infer_ratio", r["infer_median"] / floor["infer_median"]) \
                if "infer_median" in r and m != "floor" else float("nan")
            lines.append(
                f"| {m} | {r['trainable']:,} | {r['step_median']:.3f} | {beside:.3f} | {ratio:.2f} | "
                f"{'-' if m == 'hff' else format(r['bound_ratio'], '.2f')} | {ratio / lora_ratio:.2f} | "
                f"{r['peak_memory_mb']:.0f} | {r['peak_memory_mb'] / floor['peak_memory_mb']:.2f} | "
                f"{r['init_seconds']:.2f} | {r.get('init_peak_memory_mb', float('nan')):.0f} | {infer:.2f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="embedded,owsm_base", help="comma-separated shapes of --shapes_file")
    ap.add_argument("--shapes_file", default=str(ROOT / "conf" / "bench" / "shapes.yaml"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--budget", default="1%")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0, help="audio seconds per utterance")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pissa_svd", default="randomized")
    ap.add_argument("--ssvd_svd", default="gram")
    ap.add_argument("--paired", action=argparse.BooleanOptionalAction, default=True,
                    help="also step a frozen copy of the base model in alternation with each method, in the "
                         "method's process, and report the ratios from these pairs (default); --no-paired "
                         "divides by the floor row, measured in another process")
    ap.add_argument("--init_only", action="store_true",
                    help="measure initialisation (and trainable parameters) only, no training steps")
    ap.add_argument("--memory", choices=("auto", "sampled"), default="auto",
                    help="training-memory reading: auto (GPU allocator, or the kernel's peak resident set "
                         "after a reset; sampling where the reset is refused) or sampled (always sample)")
    ap.add_argument("--out", type=Path, default=Path("bench_out"))
    ap.add_argument("--worker", nargs=2, metavar=("SHAPE", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--report_from", type=Path, metavar="BENCH_JSON",
                    help="write bench.md again from a bench.json (its own command's options), measuring nothing")
    args = ap.parse_args(argv)
    args.argv = [a for a in argv]
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        again = ap.parse_args(saved["argv"])
        again.argv = saved["argv"]
        md = report(saved["results"], again)
        (args.report_from.parent / "bench.md").write_text(md)
        print(md)
        return 0
    if args.worker:
        args.shape, args.method = args.worker
        print("BENCH_RESULT " + json.dumps(worker(args)), flush=True)
        return 0
    try:
        import peft  # noqa: F401

        have_hf = True
    except ImportError:
        have_hf = False
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for shape in args.shapes.split(","):
        for method in args.methods.split(","):
            if method.startswith("hf_") and not have_hf:
                continue
            cmd = [sys.executable, "-m", "espnet_peft.bin.bench", "--worker", shape, method] + \
                  [a for a in argv if a not in ("--worker",)]
            t = time.time()
            res = subprocess.run(cmd, capture_output=True, text=True)
            line = next((l for l in res.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
            if res.returncode != 0 or line is None:
                err = (res.stderr.strip().splitlines() or ["failed"])[-1]
                results.append({"shape": shape, "method": method, "error": err})
                print(f"bench: {shape} {method}: FAILED: {err}", flush=True)
                continue
            r = json.loads(line[len("BENCH_RESULT "):])
            results.append(r)
            step = f"step {r['step_median']:.3f} s, train peak {r['peak_memory_mb']:.0f} MB, " \
                if "step_median" in r else f"init peak {r['init_peak_memory_mb']:.0f} MB, "
            print(f"bench: {shape} {method}: {step}"
                  f"init {r['init_seconds']:.2f} s ({time.time() - t:.0f} s wall)", flush=True)
    md = report(results, args)
    (args.out / "bench.md").write_text(md)
    (args.out / "bench.json").write_text(json.dumps({"argv": args.argv, "results": results}, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
