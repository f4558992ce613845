"""The performance benchmark (espnet_peft.bench, CLI espnet_peft.bin.bench): the FLOP bounds it divides by, and a smoke
run at the tiny shape (the real measurements are a benchmark with committed results, not a test)."""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from espnet_peft import bench
from espnet_peft.bin import bench as bench_cli


def test_flop_bounds_follow_the_contract():
    t, d, r = 2000, 1024, 32
    shapes = {"l": [d, d]}
    tokens = {"l": t}
    floor = 4 * t * d * d  # forward plus the activation gradient (methods.md rule 6)
    lora = bench.flop_bound("lora", [{"name": "l", "shape": [d, d], "hyper": {"r": r}}], tokens, shapes)
    assert lora == 6 * t * r * 2 * d
    assert 1.08 < (floor + lora) / floor < 1.11  # "LoRA about 1.1x the floor at r=32, d=1024"
    dora = bench.flop_bound("dora", [{"name": "l", "shape": [d, d], "hyper": {"r": r}}], tokens, shapes)
    assert dora == lora + 2 * d * d * r + 4 * t * d
    k = int(0.4 * d)
    ssvd = bench.flop_bound("ssvd", [{"name": "l", "shape": [d, d], "hyper": {"k": k}}], tokens, shapes)
    # the cheaper of: the low-rank branch forward and backward; or the two projections and dM
    # with the forward and input gradient through W + U M V^T formed once. Plus the Cayley
    # rotation (per step, not per token)
    lowrank = 4 * t * k * 2 * d + 6 * t * k * k
    dense = 2 * t * k * 2 * d + 2 * t * k * k + 2 * d * k * (k + d)
    assert dense < lowrank  # at this T the dense way is the cheaper
    projections = dense
    assert ssvd == pytest.approx(projections + 6 * k ** 3)
    assert 1.55 < (floor + projections) / floor < 1.65  # "SSVD/SSVD-O at k = 0.4 min(d) about 1.5x"
    few = {"l": 50}  # a handful of tokens: the low-rank way is the cheaper
    assert bench.flop_bound("ssvd", [{"name": "l", "shape": [d, d], "hyper": {"k": 8}}], few, shapes) == \
        pytest.approx(4 * 50 * 8 * 2 * d + 6 * 50 * 64 + 6 * 8 ** 3)
    # SSVD-O: the larger of the two rotations sets the projection width; both rotations and the
    # product R_out diag R_in are paid once per step
    ssvd_o = bench.flop_bound("ssvd_o", [{"name": "l", "shape": [d, d], "hyper": {"k_in": k, "k_out": 8}}],
                               tokens, shapes)
    assert ssvd_o == pytest.approx(projections + 6 * (k ** 3 + 8 ** 3) + 6 * k ** 3)
    assert bench.flop_bound("ssvd_rebuild", [{"name": "l", "shape": [d, d], "hyper": {"k": k}}],
                             tokens, shapes) == ssvd  # same arithmetic bound, different implementation
    assert bench.flop_bound("full", None, tokens, shapes) == 2 * t * d * d
    assert bench.flop_bound("floor", None, tokens, shapes) == 0
    assert bench.flop_bound("hff", None, tokens, shapes) is None  # no bound: it runs below the floor


@pytest.mark.parametrize("k_in,k_out", [(16, 0), (16, 16), (16, 8), (5, 12)])
def test_core_flops_match_the_counted_matrix_products(k_in, k_out):
    """core_flops = the products torch's FLOP counter sees in building M and its backward, plus the
    inverses it does not count (LU 2/3 k^3 and the inverse from it 4/3 k^3, forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    from espnet_peft.methods.ssvd_o import SubspaceRotationLinear, core_flops

    torch.manual_seed(0)
    layer = SubspaceRotationLinear(torch.nn.Linear(48, 40), k_in, k_out)
    layer.ensure_initialized()
    with torch.no_grad():
        layer.ssvd_S_in.normal_()
        layer.ssvd_S_out.normal_()
    with FlopCounterMode(display=False) as counter:
        layer.core().sum().backward()
    uncounted = 2 * (k_in ** 3 + k_out ** 3)
    assert core_flops(k_in, k_out) == pytest.approx(counter.get_total_flops() + uncounted)


def test_bench_smoke_run(tmp_path):
    methods = ["floor", "lora", "ssvd_o", "ssvd_rebuild", "full"]
    res = subprocess.run(
        [sys.executable, "-m", "espnet_peft.bin.bench", "--shapes", "tiny", "--methods", ",".join(methods),
         "--budget", "10%", "--repeats", "1", "--warmup", "0", "--seconds", "2", "--threads", "1",
         "--out", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["method"]: r for r in data["results"]}
    assert set(rows) == set(methods)
    for m, r in rows.items():
        assert "error" not in r, (m, r.get("error"))
        assert r["step_median"] > 0 and r["peak_memory_mb"] > 0
        assert r["allocator"].startswith("glibc, freed memory kept")  # timed with the quiet allocator
        if m != "floor":  # every ratio's floor was stepped beside the method
            assert len(r["paired"]["floor_seconds"]) == 1
    assert rows["floor"]["trainable"] == 0 and rows["floor"]["floor_flops"] > 0
    assert rows["full"]["trainable"] == rows["full"]["model_params"]
    # matched budget: every PEFT method trains what its plan says, within 10% of the model
    for m in ("lora", "ssvd_o", "ssvd_rebuild"):
        planned = sum(p["params"] for p in rows[m]["plan"])
        assert rows[m]["trainable"] == planned
        assert 0 < planned <= 0.1 * rows[m]["model_params"]
    assert {p["method"] for p in rows["ssvd_rebuild"]["plan"]} == {"ssvd"}
    # merged inference is measured for the mergeable methods
    assert "infer_median" in rows["lora"] and "infer_median" in rows["ssvd_o"]
    md = (tmp_path / "bench.md").read_text()
    for m in methods:
        assert f"| {m} |" in md
    assert "/ own bound" in md and "## tiny" in md
    # the machine it ran on, with its speed, is recorded and stated
    assert data["machine"]["gemm_gflops"] > 0 and data["machine"]["cores"] == os.cpu_count()
    assert f"GEMM {data['machine']['gemm_gflops']:.1f} GFLOP/s" in md
    # the table is written again from the JSON alone, with the run's own options and machine
    (tmp_path / "bench.md").unlink()
    assert bench_cli.main(["--report_from", str(tmp_path / "bench.json")]) == 0
    assert (tmp_path / "bench.md").read_text() == md


@pytest.mark.parametrize("memory", ["auto", "sampled"])
def test_timed_steps_run_without_the_memory_sampler(monkeypatch, memory):
    """The fallback sampler is a busy thread, and the allocator setting for timing would inflate
    the memory reading: no step is timed inside the reading, whichever way it is taken."""
    active, timed_while_active = [False], []

    class Probe(bench.StepPeakMemory):
        def __enter__(self):
            super().__enter__()
            active[0] = True
            return self

        def __exit__(self, *exc):
            active[0] = False
            return super().__exit__(*exc)

    clock = bench.time.perf_counter
    monkeypatch.setattr(bench, "StepPeakMemory", Probe)
    allocator_set_while_reading = []  # (the real setting would outlive this test in pytest's process)
    monkeypatch.setattr(bench, "keep_freed_memory", lambda device: (allocator_set_while_reading.append(active[0]),
                                                                     "fake")[1])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: (timed_while_active.append(active[0]), clock())[1])
    args = argparse.Namespace(
        threads=1, shapes_file=str(bench.ROOT / "conf" / "bench" / "shapes.yaml"), shape="tiny", method="lora",
        device="cpu", budget="10%", init_only=False, batch=1, seconds=1.0, warmup=0, repeats=2, memory=memory,
        pissa_svd="full", ssvd_svd="gram", paired=True)
    out = bench.worker(args)
    assert len(out["step_seconds"]) == 2 and out["peak_memory_mb"] > 0
    pair = out["paired"]  # the floor measured beside the method, in its process
    assert len(pair["floor_seconds"]) == len(pair["step_seconds"]) == 2
    assert pair["ratio"] == pytest.approx(
        bench.statistics.median(b / a for a, b in zip(pair["floor_seconds"], pair["step_seconds"])))
    assert pair["infer_ratio"] > 0
    assert out["peak_memory_how"] == ("sampled" if memory == "sampled" else "vmhwm")
    assert not any(timed_while_active)  # memory is read over untimed steps only
    assert allocator_set_while_reading == [False]  # the allocator changes after the reading


def test_bench_init_only(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "espnet_peft.bin.bench", "--shapes", "tiny", "--methods", "pissa",
         "--budget", "10%", "--pissa_svd", "full", "--threads", "1", "--init_only", "--out", str(tmp_path)],
        capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (row,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert row["init_seconds"] > 0 and row["trainable"] > 0 and "step_median" not in row
    # no training ran: no training-memory reading, the init peak is reported as such
    assert "peak_memory_mb" not in row and row["init_peak_memory_mb"] > 0
    assert "## tiny: initialisation" in (tmp_path / "bench.md").read_text()


@pytest.mark.parametrize("sample", [False, True], ids=["kernel_peak", "sampled"])
def test_step_peak_memory_leaves_out_what_came_before(sample):
    """Training memory is the peak inside the measured block: a larger allocation freed before it
    (an initialisation's SVD workspace, say) must not be charged, one made inside it must be."""
    import torch

    before = torch.ones(300 * 2 ** 20 // 4)  # 300 MB, touched, then freed
    del before
    with bench.StepPeakMemory("cpu", sample=sample) as mem:
        base = mem._status_mb("VmRSS")
        inside = torch.ones(80 * 2 ** 20 // 4)  # 80 MB, alive at the block's end
    assert mem.how == ("sampled" if sample else "vmhwm")
    assert base + 60 < mem.peak_mb < base + 200, (base, mem.peak_mb, mem.how)


def test_pairs_alternate_and_start_untimed():
    calls = []
    floor_t, method_t = bench.paired(lambda: calls.append("F"), lambda: calls.append("M"), 4)
    assert "".join(calls) == "FM" + "FMMFFMMF"  # one untimed call of each, then ABBA
    assert len(floor_t) == len(method_t) == 4


def test_report_divides_by_the_floor_beside_the_method():
    """Ratios come from the in-process pairs, not from the floor row of another process; the
    bound and the LoRA column derive from the same pairs."""
    plan = [{"name": "l", "shape": [64, 64], "hyper": {"r": 4}}]
    floor = {"shape": "s", "method": "floor", "model_params": 10 ** 6, "trainable": 0, "step_median": 1.0,
             "peak_memory_mb": 100.0, "init_seconds": 0.0, "floor_flops": 1e9, "tokens": {"l": 100},
             "linear_shapes": {"l": [64, 64]}, "infer_median": 1.0}

    def row(method, step, ratio):
        return {"shape": "s", "method": method, "model_params": 10 ** 6, "trainable": 10, "step_median": step,
                "peak_memory_mb": 110.0, "init_seconds": 0.1, "plan": plan, "infer_median": 3.0,
                "paired": {"floor_seconds": [2.0, 2.0], "step_seconds": [2.4, 2.4], "ratio": ratio,
                           "infer_ratio": 1.01}}

    results = [floor, row("lora", 3.0, 1.2), row("dora", 3.3, 1.5)]
    args = argparse.Namespace(argv=[], device="cpu", repeats=2, warmup=1, batch=1, seconds=1.0,
                                    budget="1%", init_only=False, paired=True, pissa_svd="randomized", ssvd_svd="gram")
    md = bench.report(results, args)
    lora_line = next(l for l in md.splitlines() if l.startswith("| lora |"))
    cells = [c.strip() for c in lora_line.strip("|").split("|")]
    assert cells[3] == "2.000" and cells[4] == "1.20"  # floor beside it; / floor from the pair, not 3.0
    own = (1e9 + bench.flop_bound("lora", plan, floor["tokens"], floor["linear_shapes"])) / 1e9
    assert cells[5] == f"{1.2 / own:.2f}" and cells[-1] == "1.01"
    dora_cells = [c.strip() for c in next(l for l in md.splitlines() if l.startswith("| dora |")).strip("|").split("|")]
    assert dora_cells[6] == "1.25"  # / LoRA: 1.5 / 1.2


def test_ssvd_o_overhead_script_times_cores_and_layers():
    """bench/ssvd_o_overhead.py (the breakdown behind bench/RESULTS.md) runs at the tiny shape and
    reports the cores, the adapted and the frozen layers with positive times."""
    res = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "bench" / "ssvd_o_overhead.py"),
                          "--shape", "tiny", "--budget", "20%", "--tokens", "16", "--repeats", "1", "--threads", "1"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [float(x) for x in line.split("|")[2:6]]
            for line in res.stdout.splitlines() if line.startswith("| ") and "time (ms)" not in line}
    assert set(rows) == {"cores M, fwd+bwd (all layers)", "adapted layers, fwd+bwd", "frozen layers, fwd+input grad"}
    assert all(r[0] > 0 for r in rows.values())  # times in ms
    # the adapted layers do the frozen layers' arithmetic and more
    by_flops = float(re.search(r"measured, ([0-9.]+) by FLOPs", res.stdout).group(1))
    assert by_flops > 1
    assert "layers (" in res.stdout and re.search(r"machine: .* GEMM [0-9.]+ GFLOP/s", res.stdout)


def test_gemm_rate_counts_the_product_flops(monkeypatch):
    """The rate is 2 n^3 FLOPs over the median product time, whatever the clock says."""
    ticks = iter(range(0, 10 ** 6, 2))  # every product takes 2 clock units
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    assert bench.gemm_rate(n=8, repeats=3) == 2 * 8 ** 3 / 2
    monkeypatch.undo()
    speed = bench.machine_speed()
    assert speed["gemm_gflops"] > 0 and speed["cores"] == os.cpu_count() and speed["processor"]
