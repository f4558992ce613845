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
if "--list_phases" in sys.argv:  # the launcher asks the driver for the phases (the real ones)
    from sweep_phases import PHASES
    print(" ".join(PHASES))
    sys.exit(0)
import espnet_peft
print("MAIN_ROOT=" + os.environ["MAIN_ROOT"])
print("DRIVER=" + str(Path(__file__).resolve()))
print("LIBRARY=" + str(Path(espnet_peft.__file__).resolve()))
args = sys.argv[1:]
print("PHASE=" + args[args.index("--run") + 1].split()[2] + " "
      + (args[args.index("--last_phase") + 1] if "--last_phase" in args else "all"))
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def pinned_repo(tmp_path) -> tuple:
    """A repository with the recipe's run_sweep.sh and a fake driver, committed: (recipe dir, commit)."""
    repo = tmp_path / "repo"
    recipe = repo / "egs2" / "embedded" / "asr1"
    (repo / "egs2" / "TEMPLATE").mkdir(parents=True)
    shutil.copytree(ROOT / "egs2" / "TEMPLATE" / "asr1", repo / "egs2" / "TEMPLATE" / "asr1")
    recipe.mkdir(parents=True)
    shutil.copy(ROOT / "egs2" / "embedded" / "asr1" / "run_sweep.sh", recipe / "run_sweep.sh")
    for name in ("path.sh", "cmd.sh"):
        (recipe / name).symlink_to(f"../../TEMPLATE/asr1/{name}")
    (repo / "local").mkdir()
    for name in ("parse_options.sh", "run_sweep.sh", "sweep_phases.py"):
        shutil.copy(ROOT / "local" / name, repo / "local" / name)
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
    return recipe, git(repo, "rev-parse", "HEAD")


def run_sweep(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAIN_ROOT", "PYTHONPATH")}
    return subprocess.run(["bash", "run_sweep.sh", *args], cwd=recipe, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_pinned_sweep_imports_the_worktree_library(tmp_path):
    recipe, commit = pinned_repo(tmp_path)
    res = run_sweep(recipe, "--target", "child", "--pin", "true")
    assert res.returncode == 0, res.stderr
    wt = (tmp_path / f"repo_sweep_{commit[:10]}").resolve()
    out = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    assert Path(out["MAIN_ROOT"]).resolve() == wt
    assert Path(out["DRIVER"]) == wt / "local" / "budget_sweep.py"
    assert Path(out["LIBRARY"]) == wt / "espnet_peft" / "__init__.py", "the trainings would import another library"
    assert out["PHASE"] == "child all"


def test_both_targets_run_phase_by_phase_from_one_pinned_commit(tmp_path):
    """--target all: every target's priority block before any target's later seeds, and so on, each
    invocation from the same worktree; --last_phase stops the chain, --priority_only is its first phase."""
    recipe, commit = pinned_repo(tmp_path)
    res = run_sweep(recipe, "--target", "all", "--pin", "true")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    phases = [line.split("=", 1)[1] for line in lines if line.startswith("PHASE=")]
    assert phases == [f"{t} {p}" for p in ("priority_block", "later_seeds", "other_cells", "curves")
                      for t in ("child", "accent")]
    wt = (tmp_path / f"repo_sweep_{commit[:10]}").resolve()
    drivers = {line.split("=", 1)[1] for line in lines if line.startswith("DRIVER=")}
    assert drivers == {str(wt / "local" / "budget_sweep.py")}
    res = run_sweep(recipe, "--target", "all", "--last_phase", "later_seeds")
    phases = [line.split("=", 1)[1] for line in res.stdout.splitlines() if line.startswith("PHASE=")]
    assert res.returncode == 0 and phases == ["child priority_block", "accent priority_block",
                                              "child later_seeds", "accent later_seeds"], res.stderr
    res = run_sweep(recipe, "--target", "accent", "--priority_only", "true")
    assert [l for l in res.stdout.splitlines() if l.startswith("PHASE=")] == ["PHASE=accent priority_block"]
    res = run_sweep(recipe, "--target", "all", "--last_phase", "seeds")
    assert res.returncode == 1 and "--last_phase must be" in res.stderr and "PHASE=" not in res.stdout
