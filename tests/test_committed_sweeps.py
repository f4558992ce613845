"""The committed sweep reports of the embedded recipe are what their committed run records render:
a reader can regenerate every table, interval and finding from the records alone (no exp/, no data)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import ROOT

RECIPE = ROOT / "egs2" / "embedded" / "asr1"


@pytest.mark.parametrize("target", ["child", "accent"])
def test_committed_report_renders_from_the_committed_records(tmp_path, target):
    records = RECIPE / "sweep_records" / f"embedded_{target}"
    committed = RECIPE / f"RESULTS_sweep_embedded_{target}.md"
    if not (records / "data.json").is_file():
        pytest.skip(f"no run records of the {target} sweep are committed yet")
    copy = tmp_path / "records"
    shutil.copytree(records, copy / f"embedded_{target}")
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    res = subprocess.run(["bash", "run_sweep.sh", "--target", target, "--report_only", "true", "--records", str(copy),
                          "--results_dir", str(tmp_path), "--sweep_dir", str(tmp_path / "sweep")],
                         cwd=RECIPE, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "to run" in res.stdout
    assert (tmp_path / committed.name).read_text() == committed.read_text()
    # rendering ran nothing and changed no record
    for f in records.iterdir():
        assert (copy / f"embedded_{target}" / f.name).read_bytes() == f.read_bytes(), f.name
