"""The README's promises that can be checked quickly: its first two commands, its library quick
start snippet (which must run as printed), its reliability table, a Layout that matches the tree,
and links (README.md and docs/*.md) that lead somewhere. Each checker is also shown to fail on a
broken README, so that a passing test means something."""
from __future__ import annotations

import re
import runpy
from fnmatch import fnmatch
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
TWO_COMMANDS = ["bash local/install.sh && egs2/embedded/asr1/run.sh --target child",
                "bash local/install.sh && .venv/bin/python -m pytest -q"]
# the levels whose directories the Layout must name: the top level and these folders' children
LAYOUT_LEVELS = ("", "espnet_peft", "egs2", "conf", "local")


# ------------------------------------------------------------------------------ checkers
def first_block_commands(text: str) -> List[str]:
    """The command lines (not comments, not blank) of the first ```bash block."""
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def section(text: str, title: str) -> str:
    """The body of the level-2 section ``## title`` (up to the next level-2 heading)."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"no section '## {title}'"
    return m.group(1)


def layout_names(text: str) -> List[str]:
    """The paths the Layout names: the first word of every line of its ```text block that does not
    start with white space (indented lines continue a description)."""
    block = re.search(r"```text\n(.*?)```", section(text, "Layout"), re.S)
    assert block, "the Layout section has no ```text block"
    return [line.split()[0] for line in block.group(1).splitlines() if line.strip() and not line[0].isspace()]


def _gitignore_patterns(root: Path) -> List[str]:
    path = root / ".gitignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [l.strip().strip("/") for l in lines if l.strip() and not l.lstrip().startswith(("#", "!"))]


def _ignored(rel: str, patterns: List[str]) -> bool:
    """Whether git ignores ``rel`` (a path relative to the repository; the simple patterns only:
    a pattern with a slash matches the whole path, one without matches the name)."""
    name = rel.rsplit("/", 1)[-1]
    return name == ".git" or any(fnmatch(rel, p) if "/" in p else fnmatch(name, p) for p in patterns)


def tree_directories(root: Path) -> Set[str]:
    """The directories at LAYOUT_LEVELS that belong to the project (not ignored by git)."""
    patterns = _gitignore_patterns(root)
    found = set()
    for level in LAYOUT_LEVELS:
        base = root / level if level else root
        for d in sorted(base.iterdir()) if base.is_dir() else ():
            rel = f"{level}/{d.name}" if level else d.name
            if d.is_dir() and not _ignored(rel, patterns):
                found.add(rel)
    return found


def layout_problems(text: str, root: Path) -> Tuple[List[str], List[str]]:
    """(directories of the tree the Layout does not name, paths the Layout names that do not exist)."""
    names = layout_names(text)
    plain = {n.rstrip("/") for n in names}

    def named(d: str) -> bool:  # a recipe egs2/<corpus> is named by egs2/<corpus>/asr1/
        return d in plain or (d.startswith("egs2/") and any(n.startswith(d + "/") for n in plain))

    missing = sorted(d for d in tree_directories(root) if not named(d))
    absent = [n for n in names if not ((root / n).is_dir() if n.endswith("/") else (root / n).exists())]
    return missing, absent


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def relative_links(text: str) -> List[str]:
    """Every link target in ``text`` that is not a URL (``#anchor`` alone included)."""
    targets = LINK.findall(_prose(text)) + REFERENCE.findall(_prose(text))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def github_slug(heading: str) -> str:
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    return re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")


def anchors(text: str) -> Set[str]:
    """The anchors GitHub gives the headings of ``text`` (a repeated one gets -1, -2, ...)."""
    seen: Dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), re.M):
        slug = github_slug(m.group(1))
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def broken_links(path: Path, text: str = None) -> List[str]:
    """The relative links of the markdown file ``path`` (or of ``text``, read as if it were that file)
    whose file does not exist, or whose anchor names no heading of a markdown target."""
    text = path.read_text() if text is None else text
    broken = []
    for target in relative_links(text):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and dest.is_file():
            if anchor not in anchors(text if dest == path else dest.read_text()):
                broken.append(target)
    return broken


# ------------------------------------------------------------------------------ the README's promises
def test_readme_opens_with_the_two_commands():
    assert first_block_commands(README) == TWO_COMMANDS
    assert (ROOT / "egs2" / "embedded" / "asr1" / "run.sh").exists()
    assert "python -m pytest -q" in (ROOT / ".ci" / "run").read_text()
    # the check fails when a command changes, or a third one creeps in
    assert first_block_commands(README.replace("pytest -q\n", "pytest\n", 1)) != TWO_COMMANDS
    assert first_block_commands(README.replace("```bash\n", "```bash\nmake\n", 1)) != TWO_COMMANDS


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


def test_layout_names_every_directory_and_only_existing_ones():
    missing, absent = layout_problems(README, ROOT)
    assert not missing, f"directories the README's Layout does not name: {missing}"
    assert not absent, f"paths the README's Layout names that do not exist: {absent}"
    for must in ("docs", "espnet_peft/methods", "espnet_peft/sweep", "local/corpora", "egs2/TEMPLATE"):
        assert must in tree_directories(ROOT), must  # the levels are really looked at


def test_layout_check_catches_a_made_up_and_a_forgotten_directory():
    block_end = README.index("```", README.index("```text", README.index("\n## Layout\n")) + 3)
    made_up = README[:block_end] + "made_up_dir/             not in the tree\n" + README[block_end:]
    assert layout_problems(made_up, ROOT)[1] == ["made_up_dir/"]
    line = next(l for l in section(README, "Layout").splitlines() if l.startswith("espnet_peft/sweep/"))
    forgotten = README.replace(line + "\n", "")
    assert layout_problems(forgotten, ROOT)[0] == ["espnet_peft/sweep"]


@pytest.mark.parametrize("path", [ROOT / "README.md"] + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(path):
    links = relative_links(path.read_text())
    assert links, f"{path.name} has no relative link: is the link pattern still right?"
    assert broken_links(path) == []


def test_link_check_catches_a_missing_file_and_a_missing_anchor():
    text = README + "\n[gone](docs/no_such_file.md#x) [here](#no-such-heading) [ok](docs/methods.md#lora)\n"
    assert broken_links(ROOT / "README.md", text) == ["docs/no_such_file.md#x", "#no-such-heading"]
    assert broken_links(ROOT / "README.md", "[x](`not a link`)") == []


def test_docs_exist_and_methods_md_covers_every_method():
    """The documents the README sends people to, and a section of methods.md, naming the file that
    implements it, for every registered method."""
    from espnet_peft.methods import REGISTRY

    names = {p.name for p in DOCS}
    assert {"methods.md", "adding_a_method.md", "adding_a_recipe.md"} <= names
    methods_md = (ROOT / "docs" / "methods.md").read_text()
    for name in REGISTRY:
        assert f"`{name}`" in methods_md, name
    for cited in set(re.findall(r"`(espnet_peft/[\w/]+\.py)`", methods_md)):
        assert (ROOT / cited).exists(), cited
    for link in re.findall(r"\]\(([^)#]*methods\.md)", README):
        assert link == "docs/methods.md", link  # every README link to the math goes to docs/methods.md
