"""The job backends of cmd.sh: local (parallel, per-job logs) and a real single-node Slurm."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT

LAUNCH = [sys.executable, str(ROOT / "local" / "launch.py")]


def launch(*args, env=None):
    return subprocess.run(LAUNCH + list(args), capture_output=True, text=True, env=env)


def test_local_backend_runs_jobs_in_parallel_with_logs(tmp_path):
    t = time.time()
    res = launch("--backend", "local", "JOB=1:3", str(tmp_path / "log" / "job.JOB.log"), "sleep 1; echo job JOB")
    assert res.returncode == 0, res.stderr
    assert time.time() - t < 2.8  # three 1-second jobs at once
    for i in (1, 2, 3):
        text = (tmp_path / "log" / f"job.{i}.log").read_text()
        assert f"job {i}" in text and "# exit status 0" in text


def test_local_backend_reports_failed_jobs(tmp_path):
    res = launch("--backend", "local", "--max-jobs", "1", "JOB=1:3", str(tmp_path / "f.JOB.log"), "exit $(( JOB % 2 ))")
    assert res.returncode == 1
    assert "f.1.log" in res.stderr and "f.3.log" in res.stderr and "f.2.log" not in res.stderr


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        pytest.skip("slurm-wlm is not installed (apt-get install slurm-wlm; .ci/run installs it)")
    if os.geteuid() != 0:
        pytest.skip("starting a single-node Slurm needs root")
    d = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, SLURM_TEST_DIR=str(d), SLURM_TEST_PORT=str(7100 + os.getpid() % 500))
    res = subprocess.run(["bash", str(ROOT / "local" / "slurm_localhost.sh"), "start"], capture_output=True,
                         text=True, env=env)
    if res.returncode != 0:
        logs = "\n".join(p.read_text()[-1500:] for p in (d / "log").glob("*.log"))
        pytest.fail(f"could not start Slurm: {res.stderr}\n{logs}")
    env["SLURM_CONF"] = str(d / "slurm.conf")
    yield env
    subprocess.run(["bash", str(ROOT / "local" / "slurm_localhost.sh"), "stop"], env=env)


def test_slurm_array_job(slurm, tmp_path):
    res = launch("--backend", "slurm", "--mem", "100M", "--time", "5", "JOB=1:3", str(tmp_path / "s.JOB.log"),
                 "echo slurm job JOB on $(hostname); echo array=$SLURM_ARRAY_TASK_ID", env=slurm)
    assert res.returncode == 0, res.stderr
    for i in (1, 2, 3):
        text = (tmp_path / f"s.{i}.log").read_text()
        assert f"slurm job {i}" in text and f"array={i}" in text and "slurm job" in text.splitlines()[1]
    assert list((tmp_path / "q").glob("*.sh"))  # the submitted batch script is kept for inspection


def test_slurm_failures_are_reported(slurm, tmp_path):
    res = launch("--backend", "slurm", "JOB=1:2", str(tmp_path / "x.JOB.log"), "exit $(( JOB - 1 ))", env=slurm)
    assert res.returncode == 1
    assert "x.2.log" in res.stderr and "x.1.log" not in res.stderr
