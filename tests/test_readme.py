"""The README's promises that can be checked quickly: its first two commands and its library
quick start snippet (which must run as printed)."""
from __future__ import annotations

import re
import runpy

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [l for l in first_block.splitlines() if l.strip() and not l.startswith("#")]
    assert commands == ["bash local/install.sh && egs2/embedded/asr1/run.sh --target child",
                        "bash local/install.sh && .venv/bin/python -m pytest -q"]
    assert (ROOT / "egs2" / "embedded" / "asr1" / "run.sh").exists()
    assert "python -m pytest -q" in (ROOT / ".ci" / "run").read_text()


def test_library_quick_start_runs(tmp_path):
    snippet = re.search(r"## Library quick start\n\n```python\n(.*?)```", README, re.S).group(1)
    path = tmp_path / "quick_start.py"
    path.write_text(snippet)
    ns = runpy.run_path(str(path))
    plan, encoder = ns["plan"], ns["encoder"]
    assert plan.method == "ssvd_o" and 0 < plan.total <= 0.02 * plan.model_params
    assert not any("ssvd" in n for n, _ in encoder.named_parameters())  # merged back to plain layers
    assert ns["state"] and all(hasattr(v, "shape") for v in ns["state"].values())


def test_readme_has_a_reliability_table():
    """Issue 19: what is checked before compute, what resumes, what is locked, what is refused."""
    section = re.search(r"\n## Reliability\n(.*?)\n## ", README, re.S).group(1)
    rows = [l.split("|")[1].strip() for l in section.splitlines() if l.startswith("| **")]
    for what in ("checked before compute", "resumes", "locked", "refused"):
        assert f"**{what}**" in rows, what
    assert "[Reliability](#reliability)" in README
