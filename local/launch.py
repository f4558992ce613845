#!/usr/bin/env python3
"""Run a recipe command through a job backend (the role of Kaldi's run.pl / slurm.pl).

    launch.py [options] [JOB=1:N] LOGFILE COMMAND [ARGS...]

``JOB`` in LOGFILE and COMMAND is replaced by the job index. Every job writes its own log
with the command, start time, exit status and elapsed time. Exits non-zero (naming the failed
logs) if any job failed.

Backends:
  local   jobs run as local processes, ``--max-jobs`` at a time (default: all at once)
  slurm   one ``sbatch --wait`` array job; ``--gpu``, ``--mem``, ``--time``, ``--cpus``,
          ``--partition`` map to sbatch options, ``$ESPNET_PEFT_SLURM_ARGS`` adds more
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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


def run_local(log: Path, cmd: str) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "w") as fh:
        fh.write(f"# {cmd}\n# started at {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename}\n")
        fh.flush()
        rc = subprocess.call(["bash", "-c", cmd], stdout=fh, stderr=subprocess.STDOUT, cwd=os.getcwd())
        fh.write(f"# exit status {rc}, elapsed {time.time() - start:.1f} s\n")
    return rc


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
    res = subprocess.run(sb, capture_output=True, text=True)
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
    args, jobs, log_t, cmd = parse(sys.argv[1:] if argv is None else argv)
    cmd_t = command_string(cmd)
    if args.backend == "slurm":
        results = run_slurm(args, jobs, log_t, cmd_t)
    else:
        var, lo, hi = jobs if jobs else (None, 1, 1)
        tasks = [(Path(substitute(log_t, var, i)), substitute(cmd_t, var, i)) for i in range(lo, hi + 1)]
        workers = args.max_jobs if args.max_jobs > 0 else len(tasks)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rcs = list(pool.map(lambda t: run_local(*t), tasks))
        results = [(log, rc) for (log, _), rc in zip(tasks, rcs)]
    failed = [(log, rc) for log, rc in results if rc != 0]
    if failed:
        for log, rc in failed:
            sys.stderr.write(f"launch.py: job failed (exit {rc}), see {log}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
