#!/usr/bin/env python3
"""Run a recipe command through a job backend (the role of Kaldi's run.pl / slurm.pl).

    launch.py [options] [JOB=1:N] LOGFILE COMMAND [ARGS...]

``JOB`` in LOGFILE and COMMAND is replaced by the job index. Every job writes its own log
with the command, start time, exit status and elapsed time. Exits non-zero (naming the failed
logs) if any job failed.

Backends:
  local   jobs run as local processes, ``--max-jobs`` at a time (default: all at once), each
          in its own process group
  slurm   one ``sbatch --wait`` array job; ``--gpu``, ``--mem``, ``--time``, ``--cpus``,
          ``--partition`` map to sbatch options, ``$ESPNET_PEFT_SLURM_ARGS`` adds more

Stopping: SIGTERM, SIGINT or SIGHUP to launch.py stops every job it started (local: SIGTERM to
each job's process group, SIGKILL after ``$ESPNET_PEFT_KILL_GRACE`` seconds, default 10; slurm:
``scancel`` of the array job), notes it in the job logs, and exits 128 + the signal number: no
job is left running (and writing) after its launcher is gone. The same happens when launch.py's
parent (the recipe) dies, even by SIGKILL (launch.py watches it); and every local job has a
watchdog (``launch.py --watch``, in a session of its own) that stops the job's process group if
launch.py itself is killed with SIGKILL.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

JOB_RANGE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+):(\d+)$")


def parse(argv: Sequence[str]) -> Tuple[argparse.Namespace, Optional[Tuple[str, int, int]], str, List[str]]:
    ap = argparse.ArgumentParser(prog="launch.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("local", "slurm"), default=os.environ.get("ESPNET_PEFT_BACKEND", "local"))
    ap.add_argument("--max-jobs", "--max_jobs", type=int, default=0, help="local: parallel jobs (0: all)")
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--mem", default=None)
    ap.add_argument("--time", default=None)
    ap.add_argument("--cpus", type=int, default=None)
    ap.add_argument("--partition", default=None)
    ap.add_argument("--name", default=None, help="job name (default: the log file's stem)")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    rest = list(args.rest)
    jobs = None
    if rest and JOB_RANGE.match(rest[0]):
        m = JOB_RANGE.match(rest.pop(0))
        jobs = (m.group(1), int(m.group(2)), int(m.group(3)))
        if jobs[2] < jobs[1]:
            ap.error(f"empty job range {jobs[1]}:{jobs[2]}")
    if len(rest) < 2:
        ap.error("need LOGFILE and COMMAND")
    return args, jobs, rest[0], rest[1:]


def command_string(cmd: List[str]) -> str:
    # one argument: a shell command line (as run.pl takes it); several: quote each
    return cmd[0] if len(cmd) == 1 else " ".join(shlex.quote(c) for c in cmd)


def substitute(text: str, var: Optional[str], idx: Optional[int]) -> str:
    return re.sub(rf"\b{var}\b", str(idx), text) if var else text


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def catch_signals() -> None:
    """SIGTERM / SIGINT / SIGHUP raise :class:`Interrupted` in the main thread."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_jobs(procs: List[subprocess.Popen], grace: Optional[float] = None) -> None:
    """SIGTERM to each job's process group, SIGKILL to what is left after ``grace`` seconds."""
    grace = float(os.environ.get("ESPNET_PEFT_KILL_GRACE", "10")) if grace is None else grace
    for p in procs:
        _kill_group(p.pid, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    for p in procs:  # the leader may be gone while other members of its group still run
        _kill_group(p.pid, signal.SIGKILL)
        p.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def watch(owner: int, pgid: int, poll: float = 1.0) -> int:
    """``launch.py --watch OWNER PGID``: when the process OWNER (launch.py) is gone, stop the job's
    process group PGID (SIGTERM, then SIGKILL after the grace period). Ends when the group is gone."""
    while alive(owner):
        time.sleep(poll)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return 0
    grace = float(os.environ.get("ESPNET_PEFT_KILL_GRACE", "10"))
    _kill_group(pgid, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return 0
        time.sleep(0.2)
    _kill_group(pgid, signal.SIGKILL)
    return 0


def start_watchdog(pgid: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--watch", str(os.getpid()), str(pgid)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def run_local(tasks: List[Tuple[Path, str]], max_jobs: int) -> List[int]:
    """Run (log, command) jobs, ``max_jobs`` at a time (0: all), each in its own process group with
    a watchdog; stops them all when this process's parent dies."""
    rcs: List[Optional[int]] = [None] * len(tasks)
    running = {}  # index -> (process, log handle, start time)
    dogs = {}  # index -> watchdog process
    pending = list(range(len(tasks)))
    limit = max_jobs if max_jobs > 0 else len(tasks)
    parent = os.getppid()
    try:
        while pending or running:
            if os.getppid() != parent:  # the recipe that started us is gone (even by SIGKILL)
                raise Interrupted(signal.SIGHUP)
            while pending and len(running) < limit:
                i = pending.pop(0)
                log, cmd = tasks[i]
                log.parent.mkdir(parents=True, exist_ok=True)
                fh = open(log, "w")
                fh.write(f"# {cmd}\n# started at {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename}\n")
                fh.flush()
                p = subprocess.Popen(["bash", "-c", cmd], stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=os.getcwd(), process_group=0)
                running[i] = (p, fh, time.time())
                dogs[i] = start_watchdog(p.pid)
            for i, (p, fh, start) in list(running.items()):
                rc = p.poll()
                if rc is not None:
                    fh.write(f"# exit status {rc}, elapsed {time.time() - start:.1f} s\n")
                    fh.close()
                    rcs[i] = rc
                    del running[i]
                    dogs.pop(i).terminate()
            time.sleep(0.05)
    except Interrupted as e:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # stopping is not interrupted again
            signal.signal(sig, signal.SIG_IGN)
        stop_jobs([p for p, _, _ in running.values()])
        for p, fh, start in running.values():
            fh.write(f"# stopped by signal {e.signum} to launch.py (job process group killed), "
                     f"elapsed {time.time() - start:.1f} s\n")
            fh.close()
        for d in dogs.values():
            d.terminate()
        raise
    return [rc if rc is not None else 1 for rc in rcs]


def run_slurm(args, jobs, log_t: str, cmd_t: str) -> List[Tuple[Path, int]]:
    var, lo, hi = jobs if jobs else ("JOB", 1, 1)
    qdir = Path(substitute(log_t, var, 0)).parent / "q"
    qdir.mkdir(parents=True, exist_ok=True)
    name = args.name or Path(log_t).stem.replace(var, "")
    script = qdir / f"{name}.sh"
    status_t = str(qdir / f"{name}.%a.status")
    log_expr = re.sub(rf"\b{var}\b", "${SLURM_ARRAY_TASK_ID}", log_t)
    cmd_expr = re.sub(rf"\b{var}\b", "${SLURM_ARRAY_TASK_ID}", cmd_t)
    script.write_text(
        "#!/usr/bin/env bash\n"
        f"cd {shlex.quote(os.getcwd())}\n"
        f"log=\"{log_expr}\"\nmkdir -p \"$(dirname \"$log\")\"\n"
        f"start=$(date +%s)\n"
        f"{{ echo '# '{shlex.quote(cmd_t)}; echo \"# started at $(date '+%F %T') on $(hostname) (slurm job $SLURM_JOB_ID)\"; }} > \"$log\"\n"
        f"( {cmd_expr} ) >> \"$log\" 2>&1\nrc=$?\n"
        f"echo \"# exit status $rc, elapsed $(( $(date +%s) - start )) s\" >> \"$log\"\n"
        f"echo $rc > \"{status_t.replace('%a', '${SLURM_ARRAY_TASK_ID}')}\"\nexit $rc\n")
    for i in range(lo, hi + 1):
        Path(status_t.replace("%a", str(i))).unlink(missing_ok=True)
    sb = ["sbatch", "--wait", "--parsable", f"--job-name={name}", f"--array={lo}-{hi}",
          f"--output={qdir}/{name}.%a.out"]
    if args.gpu:
        sb.append(f"--gres=gpu:{args.gpu}")
    if args.mem:
        sb.append(f"--mem={args.mem}")
    if args.time:
        sb.append(f"--time={args.time}")
    if args.cpus:
        sb.append(f"--cpus-per-task={args.cpus}")
    if args.partition:
        sb.append(f"--partition={args.partition}")
    sb += shlex.split(os.environ.get("ESPNET_PEFT_SLURM_ARGS", ""))
    sb.append(str(script))
    p = subprocess.Popen(sb, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0)
    job_id = ""
    try:
        job_id = (p.stdout.readline() or "").strip().split(";")[0]  # --parsable: the id, at submission
        out, err = p.communicate()
    except Interrupted:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if job_id:
            subprocess.run(["scancel", job_id], capture_output=True)
        stop_jobs([p])
        raise
    res = subprocess.CompletedProcess(sb, p.returncode, job_id + "\n" + out, err)
    if res.returncode != 0 and "error" in res.stderr.lower() and not any(
            Path(status_t.replace("%a", str(i))).exists() for i in range(lo, hi + 1)):
        sys.stderr.write(f"launch.py: sbatch failed: {res.stderr.strip()}\n")
        return [(Path(substitute(log_t, var, i)), 1) for i in range(lo, hi + 1)]
    out = []
    for i in range(lo, hi + 1):
        st = Path(status_t.replace("%a", str(i)))
        rc = int(st.read_text().strip()) if st.exists() else 1
        out.append((Path(substitute(log_t, var, i)), rc))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--watch"]:
        return watch(int(argv[1]), int(argv[2]))
    args, jobs, log_t, cmd = parse(argv)
    cmd_t = command_string(cmd)
    catch_signals()
    try:
        if args.backend == "slurm":
            results = run_slurm(args, jobs, log_t, cmd_t)
        else:
            var, lo, hi = jobs if jobs else (None, 1, 1)
            tasks = [(Path(substitute(log_t, var, i)), substitute(cmd_t, var, i)) for i in range(lo, hi + 1)]
            rcs = run_local(tasks, args.max_jobs)
            results = [(log, rc) for (log, _), rc in zip(tasks, rcs)]
    except Interrupted as e:
        sys.stderr.write(f"launch.py: stopped by signal {e.signum}; its jobs were stopped ({log_t})\n")
        return 128 + e.signum
    failed = [(log, rc) for log, rc in results if rc != 0]
    if failed:
        for log, rc in failed:
            sys.stderr.write(f"launch.py: job failed (exit {rc}), see {log}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
