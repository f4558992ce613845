"""Scratch copies of a recipe for the tests: its own files copied (the recipe's data/, dump/, exp/
and committed RESULTS files stay untouched), its link to the shared driver recreated (./peft_asr.sh
points at this checkout's local/; the other shared scripts are reached as "${MAIN_ROOT}/local/..."), and helpers to run it and find what it started."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List

from conftest import ROOT

SHARED_LINKS = ("peft_asr.sh",)  # each recipe links the driver to the top-level local/ (as ESPnet links asr.sh)


def copy_recipe(src: Path, dst: Path, files=("run.sh", "cmd.sh", "path.sh")) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy(src / name, dst / name)
    shutil.copytree(src / "local", dst / "local")
    shutil.copytree(src / "conf", dst / "conf", symlinks=False)
    for name in SHARED_LINKS:
        assert (src / name).is_symlink(), f"{src / name} should link to the shared local/"
        (dst / name).symlink_to((src / name).resolve())
    return dst


def recipe_env(**extra) -> dict:
    return dict(os.environ, MAIN_ROOT=str(ROOT), OMP_NUM_THREADS="1", **extra)


def processes_mentioning(text: str) -> List[int]:
    """Live processes (not zombies) whose command line contains ``text``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z" and int(proc.name) != os.getpid():
            out.append(int(proc.name))
    return out


def flock_free(path: Path) -> bool:
    """Whether nobody holds the flock on ``path``."""
    return subprocess.run(["flock", "-n", str(path), "true"]).returncode == 0
