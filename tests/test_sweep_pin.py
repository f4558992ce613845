"""A pinned sweep (run_sweep.sh --pin true) runs one commit's code from start to end: its driver,
its recipe scripts and the espnet_peft library every training imports all come from the worktree,
whatever the checkout that started it has since (the library once came from the starting checkout,
through the MAIN_ROOT its path.sh had exported)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT

FAKE_DRIVER = '''import os, sys
from pathlib import Path
import espnet_peft
print("MAIN_ROOT=" + os.environ["MAIN_ROOT"])
print("DRIVER=" + str(Path(__file__).resolve()))
print("LIBRARY=" + str(Path(espnet_peft.__file__).resolve()))
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_pinned_sweep_imports_the_worktree_library(tmp_path):
    repo = tmp_path / "repo"
    recipe = repo / "egs2" / "embedded" / "asr1"
    (repo / "egs2" / "TEMPLATE").mkdir(parents=True)
    shutil.copytree(ROOT / "egs2" / "TEMPLATE" / "asr1", repo / "egs2" / "TEMPLATE" / "asr1")
    recipe.mkdir(parents=True)
    shutil.copy(ROOT / "egs2" / "embedded" / "asr1" / "run_sweep.sh", recipe / "run_sweep.sh")
    for name in ("path.sh", "cmd.sh"):
        (recipe / name).symlink_to(f"../../TEMPLATE/asr1/{name}")
    (repo / "local").mkdir()
    shutil.copy(ROOT / "local" / "parse_options.sh", repo / "local" / "parse_options.sh")
    (repo / "local" / "budget_sweep.py").write_text(FAKE_DRIVER)
    (repo / "espnet_peft").mkdir()
    (repo / "espnet_peft" / "__init__.py").write_text("")
    (repo / "conf" / "sweep").mkdir(parents=True)
    shutil.copy(ROOT / "conf" / "sweep" / "embedded.yaml", repo / "conf" / "sweep" / "embedded.yaml")
    (repo / ".gitignore").write_text(".venv\n")
    (repo / ".venv").symlink_to(ROOT / ".venv")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pinned")
    commit = git(repo, "rev-parse", "HEAD")
    env = {k: v for k, v in os.environ.items() if k not in ("MAIN_ROOT", "PYTHONPATH")}
    res = subprocess.run(["bash", "run_sweep.sh", "--target", "child", "--pin", "true"], cwd=recipe, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    wt = (tmp_path / f"repo_sweep_{commit[:10]}").resolve()
    out = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    assert Path(out["MAIN_ROOT"]).resolve() == wt
    assert Path(out["DRIVER"]) == wt / "local" / "budget_sweep.py"
    assert Path(out["LIBRARY"]) == wt / "espnet_peft" / "__init__.py", "the trainings would import another library"
