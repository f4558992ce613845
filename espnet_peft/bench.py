"""Performance benchmark: step time, peak memory, initialisation and merged-inference time of
every registered method on real ESPnet models, against the frozen-base floor, each method's own FLOP
lower bound, a baseline method (``--baseline``), and the other implementations a method names as its
references (``Method.references``; those that need a missing package, such as ``peft``, are left out).

    python -m espnet_peft.bin.bench --shapes embedded,owsm_base --budget 1% --out bench_cpu
    python -m espnet_peft.bin.bench --shapes tiny --repeats 2 --out /tmp/bench   # smoke run

Every (shape, row) runs in its own process (clean memory readings); the driver writes
``bench.json`` and ``bench.md`` (medians, ratios to the floor, to the method's own bound and to
the baseline). Runs on the CPU, or on a GPU with ``--device cuda``; never needs one.

What a method is benchmarked with comes from its declaration (``espnet_peft/methods``): the modules
it adapts (``bench_targets``, else every linear layer of the blocks, :data:`TARGETS`), the budget
(if it has a budget knob), option values (an option's ``bench`` value; each such option is also a
``--<method>_<option>`` flag, shared by the methods that share the declaration), its references,
and its FLOP bound: ``Method.step_flops``, the extra FLOPs of a training step over the frozen
base, per adapted matrix from the tokens it sees (methods.md rule 6). The floor itself is a
forward plus the backward through activations, its FLOPs counted with torch's FLOP counter on
the same input. A method without a bound (one that runs below the floor) shows ``-``.

A method's bound is the floor's step time scaled by ``(floor FLOPs + extra FLOPs) / floor FLOPs``.
The floor it is scaled from is measured *beside the method*: its worker process also builds a frozen
copy of the base model and steps the two alternately (ABBA order), and every ratio is the median of
the per-pair ratios, which cancels the drift of a shared machine between processes (``--no-paired``
restores the cross-process ratios).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Every linear layer of the encoder and decoder blocks; the output layer is left out (on a 50k
# vocabulary one rank there costs 50,384 parameters, more than a 1% budget gives one module).
TARGETS = ["*attn.linear_q", "*attn.linear_k", "*attn.linear_v", "*attn.linear_out", "feed_forward*.w_1",
           "feed_forward*.w_2", "channel_proj1.0", "channel_proj2", "merge_proj"]
#: the frozen base model's row (not a method)
FLOOR = "floor"


# --------------------------------------------------------------------------- what is benchmarked
def registry():
    from espnet_peft.methods import REGISTRY

    return REGISTRY


def reference_of() -> Dict[str, str]:
    """Bench rows that run another implementation of one of our methods, and that method."""
    return {ref: name for name, m in registry().items() for ref in m.references}


def bench_rows() -> List[str]:
    """The floor, then every registered method followed by its references."""
    return [FLOOR] + [row for name, m in registry().items() for row in (name, *m.references)]


def knobs() -> Dict[str, Tuple[object, List[str]]]:
    """``{flag: (option, methods)}``: one ``--<method>_<option>`` flag per option declaration with a
    bench value, named after the first method declaring it and shared by every method that does."""
    out: Dict[str, Tuple[object, List[str]]] = {}
    for name, m in registry().items():
        for o in m.options:
            if o.bench is None:
                continue
            flag = next((f for f, (opt, _) in out.items() if opt is o), None)
            if flag is None:
                out[f"{name}_{o.name}"] = (o, [name])
            else:
                out[flag][1].append(name)
    return out


def bench_config(method: str, args) -> Dict:
    """The PEFT config a registered method is benchmarked with."""
    m = registry()[method]
    cfg = {"method": method, "target_modules": list(m.bench_targets or TARGETS)}
    if m.budgeted:
        cfg["budget"] = args.budget
    cfg.update({o.name: getattr(args, flag, o.bench) for flag, (o, users) in knobs().items() if method in users})
    return cfg


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
    lens = torch.tensor([samples] * n, dtype=torch.long, device=device)
    tl = max(2, int(seconds * 3))
    text = torch.randint(3, int(shape["vocab"]) - 2, (n, tl), generator=g).to(device)
    tlens = torch.tensor([tl] * n, dtype=torch.long, device=device)
    return speech, lens, text, tlens


# --------------------------------------------------------------------------- one measurement
def peak_memory_mb(device: str) -> float:
    """The process's peak so far: allocated GPU memory, or the CPU's peak resident set."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def give_back_freed_memory() -> bool:
    """glibc's ``malloc_trim(0)``: return freed heap memory to the kernel. Without it, memory that
    initialisation freed (replaced weights, an SVD's workspace) can stay resident and be charged
    to training (bench/RESULTS.md)."""
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


# --------------------------------------------------------------------------- one row's process
def adapt(model, row: str, args):
    """Set up bench row ``row`` on ``model`` (what the initialisation time measures); its plan."""
    import espnet_peft

    if row == FLOOR:
        for p in model.parameters():
            p.requires_grad_(False)
        return None
    method = reference_of().get(row, row)
    reference = registry()[method].references.get(row)
    cfg = bench_config(method, args)
    # a reference gets the library's planner handed in (methods/ imports nothing above it)
    return reference.setup(model, cfg, espnet_peft.inject) if reference else espnet_peft.apply_peft(model, cfg)


def train_step(net, data, opt, device: str) -> Callable[[], None]:
    speech, lens, text, tlens = data

    def step():
        x = speech.clone().requires_grad_(True)  # the floor back-propagates through activations
        loss, _, _ = net(x, lens, text, tlens)
        loss.backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(device)
    return step


def infer_step(net, data, device: str) -> Callable[[], None]:
    import torch

    def step():
        with torch.no_grad():
            net(*data)
        sync(device)
    return step


def floor_flops(model, step) -> Dict:
    """The FLOPs of one floor step, and the tokens and shape of every linear layer."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    tokens: Dict[str, int] = {}

    def count(name):
        return lambda m, i, o: tokens.__setitem__(name, tokens.get(name, 0) + i[0].numel() // i[0].shape[-1])

    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    hooks = [m.register_forward_hook(count(n)) for n, m in linears.items()]
    with FlopCounterMode(display=False) as fc:
        step()
    for h in hooks:
        h.remove()
    return {"floor_flops": fc.get_total_flops(), "tokens": tokens,
            "linear_shapes": {n: list(m.weight.shape) for n, m in linears.items()}}


def timed(fn, n: int) -> List[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def gemm_rate(n: int = 1024, repeats: int = 20, device: str = "cpu") -> float:
    """The machine's float32 ``n x n`` matmul rate in FLOP/s: the median of ``repeats`` products
    after one warm-up, with torch's current thread count."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def product():
        a @ b
        sync(device)
    product()
    return 2.0 * n ** 3 / statistics.median(timed(product, repeats))


def machine_speed(device: str = "cpu") -> Dict:
    """What a timing should be read against: the processor, the cores, torch and its threads, and
    the GEMM rate (GFLOP/s) on ``device``."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.startswith("cuda"):
        cpu = f"{torch.cuda.get_device_name(device)} (host {cpu})"
    return {"processor": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": device, "gemm_gflops": gemm_rate(device=device) / 1e9}


def machine_line(speed: Dict) -> str:
    return (f"{speed['processor']}, {speed['cores']} cores, torch {speed['torch']} with {speed['threads']} threads: "
            f"float32 1024x1024 GEMM {speed['gemm_gflops']:.1f} GFLOP/s on {speed['device']} (median of 20)")


def time_steps(step, floor_step, args) -> Dict:
    """Step times; with a floor beside the method (``floor_step``), in alternating pairs."""
    if floor_step is not None:
        fl, times = paired(floor_step, step, args.repeats)
        out = {"paired": {"floor_seconds": fl, "step_seconds": times,
                          "ratio": statistics.median(b / a for a, b in zip(fl, times))}}
    else:
        step()  # untimed: the first step after the allocator change fills its heap
        out, times = {}, timed(step, args.repeats)
    return {**out, "step_seconds": times, "step_median": statistics.median(times)}


def time_merged_inference(model, floor_model, data, out: Dict, args) -> None:
    """Merged inference (forward only, no gradient) against the unadapted model's."""
    import espnet_peft

    if out["method"] != FLOOR:
        espnet_peft.merge_peft(model)
    model.eval()
    infer = infer_step(model, data, args.device)
    out["infer_median"] = statistics.median(timed(infer, max(2, args.repeats)))
    if floor_model is not None:
        floor_model.eval()
        fl, me = paired(infer_step(floor_model, data, args.device), infer, max(2, args.repeats))
        out["paired"]["infer_ratio"] = statistics.median(b / a for a, b in zip(fl, me))


def worker(args) -> Dict:
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    shape = yaml.safe_load(Path(args.shapes_file).read_text())[args.shape]
    row, device = args.method, args.device
    model = build_model(shape).to(device)
    out = {"shape": args.shape, "method": row, "model_params": sum(p.numel() for p in model.parameters()),
           "device": device, "threads": torch.get_num_threads()}
    reference = registry()[reference_of()[row]].references[row] if row in reference_of() else None
    if reference is not None and reference.needs:
        importlib.import_module(reference.needs)  # its import time is not initialisation
    t0 = time.perf_counter()
    plan = adapt(model, row, args)
    sync(device)
    out["init_seconds"] = time.perf_counter() - t0
    out["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if plan is not None:
        out["plan"] = [r.as_dict() for r in plan.rows]
    out["init_peak_memory_mb"] = peak_memory_mb(device)  # the process's peak up to here
    if args.init_only:  # initialisation cost only (SVD routes at large shapes)
        return out
    data = batch(shape, args.batch, args.seconds, device)
    params = [p for p in model.parameters() if p.requires_grad]
    step = train_step(model.train(), data, torch.optim.AdamW(params, lr=1e-4) if params else None, device)
    # 1. training memory, over untimed steps (at least two: the optimizer's state exists from the
    # second step's forward on; the fallback sampler is a busy thread that would slow a timed step)
    with StepPeakMemory(device, sample=args.memory == "sampled") as mem:
        for _ in range(max(2, args.warmup)):
            step()
    out["peak_memory_mb"], out["peak_memory_how"] = mem.peak_mb, mem.how
    if row == FLOOR:
        out.update(floor_flops(model, step))
    # 2. time, with the allocator keeping what it frees (after the memory reading, which it would inflate),
    # beside a frozen copy of the base model (same weights) stepped in alternation with the method
    out["allocator"] = keep_freed_memory(device)
    floor_model = None
    if args.paired and row != FLOOR:
        floor_model = build_model(shape).to(device).train()
        for p in floor_model.parameters():
            p.requires_grad_(False)
    floor_step = None if floor_model is None else train_step(floor_model, data, None, device)
    out.update(time_steps(step, floor_step, args))
    if row == FLOOR or (reference is None and registry()[row].exports_stock_model):
        time_merged_inference(model, floor_model, data, out, args)
    return out


def keep_freed_memory(device: str) -> str:
    """On the CPU, stop glibc from handing freed activation memory back to the kernel after every
    step (and faulting it in again on the next), which was most of the step-to-step noise
    (bench/RESULTS.md). Training scripts get the same with jemalloc or tcmalloc. Returns what was
    set, for the JSON."""
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
def flop_bound(row: str, plan: Optional[List[Dict]], tokens: Dict[str, int],
               shapes: Dict[str, List[int]]) -> Optional[float]:
    """Extra FLOPs of a row's training step over the floor (its method's ``step_flops``); None: no bound."""
    if row == FLOOR:
        return 0.0
    return registry()[reference_of().get(row, row)].step_flops(plan, tokens, shapes)


def floor_ratio(row: Dict, floor: Dict) -> float:
    """A method's step over the floor's: the median of its in-process pairs when it has them,
    else its median over the floor row's (two processes)."""
    if row is floor:
        return 1.0
    if "paired" in row:
        return row["paired"]["ratio"]
    return row["step_median"] / floor["step_median"]


def bench_options(args) -> str:
    return "; ".join(f"{', '.join(users)} {o.name}={getattr(args, flag, o.bench)}"
                     for flag, (o, users) in knobs().items())


def report_header(args) -> List[str]:
    init_mem = "the process's peak through building the model and initialising the method"
    options = f"Method options: {bench_options(args)}."
    head = [f"# Benchmark ({time.strftime('%Y-%m-%d')})", "",
            f"Command: `python -m espnet_peft.bin.bench {' '.join(args.argv)}`", ""]
    speed = getattr(args, "machine", None)
    machine = (f"Machine: {machine_line(speed)}; " if speed else
               f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, device {args.device}; ")
    if args.init_only:
        return head + [machine + f"initialisation only, each method in its own process: building the model is not "
                       f"timed, planning and initialising the method are; budget {args.budget}. {options} "
                       f"Init peak mem: {init_mem}.", ""]
    ratios = (f"Ratios to the floor (and to the bound and the baseline, which derive from them): the median over "
              f"{args.repeats} pairs of the method's step and a frozen base model's step taken in alternation in "
              f"the method's own process (*floor beside it* is the median of those floor steps; the floor row's "
              f"own process may differ by the drift between processes); merged inference likewise. "
              if getattr(args, "paired", False) else "Ratios: medians over the floor row's, measured in another process. ")
    return head + [
        machine + f"medians of {args.repeats} steps after {args.warmup} warm-up; batch {args.batch} x "
        f"{args.seconds:g} s; budget {args.budget}. " + ratios +
        f"Own bound: the floor scaled by the method's FLOP ratio (see the module docstring). "
        f"Steps are timed with the allocator keeping freed memory (see keep_freed_memory). "
        f"Train peak mem: the peak over max(2, warm-up) untimed steps only (the kernel's peak resident set reset "
        f"after initialisation, or the GPU allocator's peak); init peak mem: {init_mem}. {options}", ""]


def init_table(shape: str, rows: Dict[str, Dict]) -> List[str]:
    lines = [f"## {shape}: initialisation", "", "| method | trainable | init (s) | init peak mem (MB) |",
             "|---|---:|---:|---:|"]
    for m in bench_rows():
        r = rows.get(m)
        if r is not None:
            lines.append(f"| {m} | {r['error'][:80]} | | |" if "error" in r else
                         f"| {m} | {r['trainable']:,} | {r['init_seconds']:.2f} | {r['init_peak_memory_mb']:.0f} |")
    return lines + [""]


def step_table(shape: str, rows: Dict[str, Dict], baseline: str) -> List[str]:
    floor = rows.get(FLOOR)
    if not floor:
        return []
    ff = floor["floor_flops"]
    base = rows.get(baseline)
    base = base if base and "error" not in base else None  # a failed baseline run leaves the column empty
    base_ratio = floor_ratio(base, floor) if base else float("nan")
    lines = [f"## {shape} ({floor['model_params'] / 1e6:.1f} M parameters)", "",
             f"| method | trainable | step (s) | floor beside it (s) | / floor | / own bound | / {baseline} | "
             "train peak mem (MB) | / floor | init (s) | init peak mem (MB) | merged infer / base |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in bench_rows():
        r = rows.get(m)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {m} | | | | | | | | | | | {r['error'][:80]} |")
            continue
        ratio = floor_ratio(r, floor)
        bound = flop_bound(m, r.get("plan"), floor["tokens"], floor["linear_shapes"])
        if bound is not None:
            r["bound_ratio"] = ratio / ((ff + bound) / ff)  # measured step / (its floor x the FLOP ratio)
        pair = r.get("paired", {})
        beside = statistics.median(pair["floor_seconds"]) if pair else floor["step_median"]
        infer = pair.get("infer_ratio", r["infer_median"] / floor["infer_median"]) \
            if "infer_median" in r and m != FLOOR else float("nan")
        lines.append(
            f"| {m} | {r['trainable']:,} | {r['step_median']:.3f} | {beside:.3f} | {ratio:.2f} | "
            f"{format(r['bound_ratio'], '.2f') if bound is not None else '-'} | {ratio / base_ratio:.2f} | "
            f"{r['peak_memory_mb']:.0f} | {r['peak_memory_mb'] / floor['peak_memory_mb']:.2f} | "
            f"{r['init_seconds']:.2f} | {r.get('init_peak_memory_mb', float('nan')):.0f} | {infer:.2f} |")
    return lines + [""]


def report(results: List[Dict], args) -> str:
    by_shape: Dict[str, Dict[str, Dict]] = {}
    for r in results:
        by_shape.setdefault(r["shape"], {})[r["method"]] = r
    lines = report_header(args)
    baseline = getattr(args, "baseline", None) or next(iter(registry()))
    for shape, rows in by_shape.items():
        lines += init_table(shape, rows) if args.init_only else step_table(shape, rows, baseline)
    return "\n".join(lines) + "\n"


def run_rows(args, argv: List[str]) -> List[Dict]:
    """Every (shape, row) in its own worker process."""
    results = []
    refs = reference_of()
    for shape in args.shapes.split(","):
        for row in args.methods.split(","):
            needs = registry()[refs[row]].references[row].needs if row in refs else None
            if needs and importlib.util.find_spec(needs) is None:
                continue  # a reference whose package is not installed
            cmd = [sys.executable, "-m", "espnet_peft.bin.bench", "--worker", shape, row] + argv
            t = time.time()
            res = subprocess.run(cmd, capture_output=True, text=True)
            line = next((l for l in res.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
            if res.returncode != 0 or line is None:
                err = (res.stderr.strip().splitlines() or ["failed"])[-1]
                results.append({"shape": shape, "method": row, "error": err})
                print(f"bench: {shape} {row}: FAILED: {err}", flush=True)
                continue
            r = json.loads(line[len("BENCH_RESULT "):])
            results.append(r)
            step = f"step {r['step_median']:.3f} s, train peak {r['peak_memory_mb']:.0f} MB, " \
                if "step_median" in r else f"init peak {r['init_peak_memory_mb']:.0f} MB, "
            print(f"bench: {shape} {row}: {step}init {r['init_seconds']:.2f} s ({time.time() - t:.0f} s wall)",
                  flush=True)
    return results
