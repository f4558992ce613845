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


def _gone(pid_file, timeout=15.0) -> bool:
    """Whether the process whose pid the job wrote is gone within ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pid_file.is_file() and pid_file.read_text().strip():
            pid = int(pid_file.read_text())
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        time.sleep(0.2)
    return False


def _start(tmp_path, wrapper):
    """A job that records its pid and sleeps, started by launch.py (directly, or under a bash
    parent with ``wrapper``); returns (the started process, the pid file)."""
    pid_file = tmp_path / "job.pid"
    job = f"echo $$ > {pid_file}; exec sleep 120"
    cmd = LAUNCH + ["--backend", "local", str(tmp_path / "job.log"), job]
    if wrapper:  # the recipe: a bash parent of launch.py, in the background as peft_asr.sh's run_job
        import shlex

        cmd = ["bash", "-c", f"{' '.join(map(shlex.quote, cmd))} & wait"]
    p = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 10
    while not (pid_file.is_file() and pid_file.read_text().strip()) and time.time() < deadline:
        time.sleep(0.1)
    return p, pid_file


def test_a_job_dies_with_its_launcher_even_by_sigkill(tmp_path):
    """kill -9 of launch.py: its watchdog stops the job (no orphan keeps writing into exp/)."""
    p, pid_file = _start(tmp_path, wrapper=False)
    os.kill(p.pid, 9)
    p.wait()
    assert _gone(pid_file), "the job outlived its launcher"


def test_a_job_dies_with_the_recipe_that_launched_it(tmp_path):
    """kill -9 of the recipe (launch.py's parent): launch.py stops its jobs and says so in the log."""
    p, pid_file = _start(tmp_path, wrapper=True)
    os.kill(p.pid, 9)
    p.wait()
    assert _gone(pid_file), "the job outlived the recipe"
    deadline = time.time() + 10
    while "stopped by signal" not in (tmp_path / "job.log").read_text() and time.time() < deadline:
        time.sleep(0.2)
    assert "stopped by signal" in (tmp_path / "job.log").read_text()


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


def test_killing_launch_py_stops_its_jobs(tmp_path):
    """Issue 19 item 8: SIGTERM to launch.py stops every job it started (each job's whole process
    group: here a shell and its sleep), notes it in the job logs and exits 128 + 15."""
    import signal

    pids = tmp_path / "pids"
    proc = subprocess.Popen(LAUNCH + ["--backend", "local", "JOB=1:2", str(tmp_path / "k.JOB.log"),
                                      f"sleep 300 & echo $$ $! >> {pids}; wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (pids.is_file() and len(pids.read_text().split()) == 4):
            time.sleep(0.1)
        started = [int(p) for p in pids.read_text().split()]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM and "stopped by signal 15" in err
        for pid in started:  # the job shells and their children are gone
            assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1][:3]
        assert "stopped by signal 15" in (tmp_path / "k.1.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
