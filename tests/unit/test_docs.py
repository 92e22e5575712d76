"""The docs restate the code only where a test keeps them equal: the package tree of
docs/architecture.md against the packages on disk, and the audit table of docs/audits.md against the
audits' metadata; every audit package has the one layout the tree describes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from auditors.audits.table import END, START, audit_table
from auditors.registry import BUILTIN, builtin_infos

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("auditors", "occulta", "api", "worker")
# Every module of these packages is listed in the tree (the audits wing); elsewhere packages only.
COMPLETE = ("auditors",)
LAYOUT = ("__init__.py", "config.py", "audit.py", "shard.py", "merge.py", "artifacts.py", "charts.py")


def _tree() -> list[str]:
    """Every package (`x/`) and module (`x.py`) path in the tree of "The house"."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## The house\n\n```\n", 1)[1].split("```", 1)[0]
    stack: list[str] = []
    paths = []
    for line in block.splitlines():
        stripped = line.lstrip(" ")
        name = stripped.split(" ", 1)[0]
        depth = (len(line) - len(stripped)) // 2
        if not name.endswith(("/", ".py")) or depth > len(stack):
            continue  # a description continued on its own line
        stack = stack[:depth]
        path = "/".join([*stack, name.rstrip("/")])
        if path.split("/")[0] not in PACKAGES:
            continue
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
            paths.append(path + "/")
        else:
            paths.append(path)
    return paths


def _packages() -> set[str]:
    return {
        p.parent.relative_to(ROOT).as_posix() + "/"
        for root in PACKAGES
        for p in (ROOT / root).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }


def test_the_architecture_tree_lists_exactly_the_packages() -> None:
    listed = {p for p in _tree() if p.endswith("/")}
    assert listed == _packages()


def test_every_module_the_tree_lists_exists_and_the_audits_wing_lists_them_all() -> None:
    listed = {p for p in _tree() if p.endswith(".py")}
    missing = sorted(p for p in listed if not (ROOT / p).is_file())
    assert not missing, f"the tree lists modules that do not exist: {missing}"
    on_disk = {
        p.relative_to(ROOT).as_posix()
        for root in COMPLETE
        for p in (ROOT / root).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert sorted(on_disk - listed) == [], "modules missing from the tree in docs/architecture.md"


@pytest.mark.parametrize("package", BUILTIN)
def test_every_audit_package_has_the_one_layout(package: str) -> None:
    folder = ROOT / package.replace(".", "/")
    assert [f for f in LAYOUT if not (folder / f).is_file()] == []


def test_the_audit_table_of_the_docs_is_generated_from_the_metadata() -> None:
    text = (ROOT / "docs" / "audits.md").read_text()
    assert START in text and END in text
    committed = START + text.split(START, 1)[1].split(END, 1)[0] + END
    assert committed == audit_table(builtin_infos()), "run: python -m auditors.audits.table"


def test_every_cited_docs_heading_exists() -> None:
    """A docstring that sends the reader to a heading of docs/<file>.md sends them somewhere real."""
    cite = re.compile(r'docs/([a-z_-]+\.md), "([^"]+)"')
    headings: dict[str, list[str]] = {}
    for doc in (ROOT / "docs").glob("*.md"):
        titles = [line.lstrip("#").strip() for line in doc.read_text().splitlines() if line.startswith("#")]
        headings[doc.name] = [re.sub(r"^\d+\.\s*", "", t) for t in titles]
    broken = []
    for root in (*PACKAGES, "docs", "tests", "bench"):
        for path in (ROOT / root).rglob("*"):
            if path.suffix not in (".py", ".md") or "__pycache__" in path.parts:
                continue
            for doc, title in cite.findall(path.read_text()):
                if not any(h.startswith(title) for h in headings.get(doc, [])):
                    broken.append(f"{path.relative_to(ROOT)}: {doc}, {title!r}")
    assert broken == []
