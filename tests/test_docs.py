"""The documentation against the repository: the README's size and first lines, links, settings.

Generated sections are checked where they are generated from: the views table of docs/run-log.md
in test_notebooks.py, the demo catalogue of docs/demo-shop.md in test_demo_site.py.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MAX_README_LINES = 320

# [text](target) and ![alt](target); the target ends at the first space or closing parenthesis.
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)


def _prose(text: str) -> str:
    """The markdown without fenced blocks and code spans, where link syntax is only an example."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text(encoding="utf-8")))


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        found = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if found:
            slug = _slug(found.group(1))
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return out


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; keep it at most {MAX_README_LINES}: move detail to a page under docs/")
    head = "\n".join(lines[:40])
    assert "make run" in head and "make test" in head, "README.md must open with `make run` and `make test`"


def test_every_docs_page_linked_from_the_readme_exists_and_every_page_is_linked() -> None:
    linked = {(README.parent / t.split("#")[0]).resolve() for t in _links(README)
              if _relative(t) and t.split("#")[0].startswith("docs/") and t.split("#")[0].endswith(".md")}
    assert len(linked) >= 8, f"the README links only {len(linked)} docs pages"
    missing = sorted(str(p.relative_to(ROOT)) for p in linked if not p.is_file())
    assert missing == [], f"README.md links docs pages that do not exist: {missing}"
    unlinked = sorted(p.name for p in PAGES if p.resolve() not in linked)
    assert unlinked == [], f"docs pages no README link leads to: {unlinked}; add them to the README's table"


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files_and_headings(path: Path) -> None:
    broken = []
    for target in _links(path):
        if not _relative(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert broken == [], f"broken links in {path.relative_to(ROOT)}: {broken}"


def test_link_checker_sees_links_and_skips_code() -> None:
    sample = "see [api](docs/api.md#errors) and ![shot](docs/x.png)\n`[no](nope.md)`\n```\n[no](nope2.md)\n```\n"
    assert LINK.findall(_prose(sample)) == ["docs/api.md#errors", "docs/x.png"]
    assert _slug("Gradio's API") == "gradios-api"
    assert _slug("Page observation (what the model reads)") == "page-observation-what-the-model-reads"
    assert _slug("The document (`\"format\": \"workbench-workflow/1\"`)") == "the-document-format-workbench-workflow1"


# ------------------------------------------------------------------ the maps
# A repository path in backticks: `app.py`, `agent/log/rows.py`, `agent/log/migrations/`, `notebooks/`.
REPO_PATH = re.compile(r"`((?:agent|bench|data|docs|notebooks|tests)/[\w./-]*|app\.py)`")
# Named in the README before they exist, by a branch merged alongside this one. This set must be
# empty once that branch is merged: the test below fails while a listed path exists.
PENDING_PATHS: set[str] = set()
RUNTIME_PATHS = {"data/runs.duckdb"}  # made by the app when it runs, never committed
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}


def _packages() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "agent").glob("*/__init__.py"))


def test_every_path_the_readme_names_exists() -> None:
    """The path table and "Where to change what" point at real files and folders."""
    named = set(REPO_PATH.findall(README.read_text(encoding="utf-8")))
    assert len(named) >= 15, f"the README names only {len(named)} paths; did the pattern break?"
    missing = sorted(p for p in named - PENDING_PATHS - RUNTIME_PATHS if not (ROOT / p).exists())
    assert missing == [], f"README.md names paths that do not exist: {missing}"
    arrived = sorted(p for p in PENDING_PATHS if (ROOT / p).exists())
    assert arrived == [], f"{arrived} exist now: remove them from PENDING_PATHS in tests/test_docs.py"


@pytest.mark.parametrize("where, spelling", [
    ("README.md", "`agent/{}/`"), ("docs/development.md", "  {}/ "), ("agent/__init__.py", "`agent.{}`"),
])
def test_every_package_appears_in_every_map(where: str, spelling: str) -> None:
    text = (ROOT / where).read_text(encoding="utf-8")
    absent = [p for p in _packages() if spelling.format(p) not in text]
    assert absent == [], f"{where} does not name agent/{absent[0] if absent else ''}/: add it to its map"


def test_the_notebooks_are_counted_right() -> None:
    count = len(list((ROOT / "notebooks").glob("*.ipynb")))
    for path in (README, DOCS / "development.md"):
        said = re.findall(r"\b(\w+) (?:analysis )?notebooks\b", path.read_text(encoding="utf-8"))
        counted = [NUMBERS[w.lower()] for w in said if w.lower() in NUMBERS]
        assert counted and set(counted) == {count}, f"{path.name} counts {counted} notebooks; there are {count}"


# ------------------------------------------------------------------ settings
# Places that read a variable whose name is not a literal or a module constant, and where the
# names come from: each must be covered by the names collected below.
DYNAMIC_READS = {
    ("agent/engine/llm.py", "_env"),  # KEY_VARS and BASE_URL_VARS
    ("agent/rules/policy.py", "_domain_rules"),  # ALLOWED_ENV, BLOCKED_ENV
    ("agent/service/runs.py", "_env_int"),  # called with literal names
    ("agent/service/routes.py", "health_report"),  # KEY_VARS
    ("app.py", "startup_checks"),  # KEY_VARS
}
READERS = {"get", "getenv", "setdefault", "_env_int"}


def _env_reads(path: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """(variable names read in `path`, (file, function) of reads whose name is computed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)
                 and isinstance(n.value.value, str)}
    names = {v for k, v in constants.items() if k.endswith("_ENV")}
    dynamic = set()
    rel = str(path.relative_to(ROOT))

    def environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            where = node.name
        arg = None
        if isinstance(node, ast.Call) and node.args:
            f = node.func
            reads = (isinstance(f, ast.Attribute) and f.attr in READERS and (environ(f.value) or f.attr == "getenv")) \
                or (isinstance(f, ast.Name) and f.id == "_env_int")
            arg = node.args[0] if reads else None
        elif isinstance(node, ast.Subscript) and environ(node.value):
            arg = node.slice
        if arg is not None:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                names.add(constants[arg.id])
            else:
                dynamic.add((rel, where))
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(tree, "<module>")
    return names, dynamic


def test_settings_page_lists_every_environment_variable_the_code_reads() -> None:
    from agent.engine.llm import BASE_URL_VARS, KEY_VARS

    names: set[str] = {n for group in (*KEY_VARS.values(), *BASE_URL_VARS.values()) for n in group}
    dynamic: set[tuple[str, str]] = set()
    for path in [ROOT / "app.py", *sorted((ROOT / "agent").rglob("*.py"))]:
        found, computed = _env_reads(path)
        names |= found
        dynamic |= computed
    assert {"WORKBENCH_API_KEY", "MAX_QUEUED_RUNS", "WEBHOOK_SECRET", "WORKBENCH_ALLOWED_DOMAINS",
            "CHROMIUM_PATH", "WORKBENCH_EXPORTS_DIR", "GEMINI_API_KEY"} <= names, names
    assert dynamic <= DYNAMIC_READS, (
        f"environment reads with computed names: {sorted(dynamic - DYNAMIC_READS)}; use a literal or a *_ENV "
        "constant, or add the place to DYNAMIC_READS with where its names come from")
    settings = (DOCS / "settings.md").read_text(encoding="utf-8")
    missing = sorted(n for n in names if f"`{n}`" not in settings)
    assert missing == [], f"docs/settings.md does not list {missing}: add a row for each"
