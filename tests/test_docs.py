"""The docs site follows the code: every subcommand of the parser has its section in the command-line page, the
environment-variable page renders every variable of settings.ENVIRONMENT, and the README's board excerpt is the
board of the release the results page was generated from."""

import argparse
import importlib.util
import re

from gene_assets.cli import build_parser
from gene_assets.settings import ENVIRONMENT, PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in `text` (separator rows aside)."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")
    ]
    return [r for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r)]


def subcommands() -> list[str]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def test_every_subcommand_has_its_section_in_the_command_line_page():
    """Each `gene-assets` subcommand has a `## gene-assets NAME` heading in docs/cli.md, and no heading names a
    subcommand the parser lacks."""
    headings = re.findall(r"^## gene-assets ([a-z-]+)$", (DOCS / "cli.md").read_text(), flags=re.M)
    commands = subcommands()
    assert "run" in commands and "pull" in commands
    assert sorted(set(commands) - set(headings)) == [], "docs/cli.md lacks these subcommands' sections"
    assert sorted(set(headings) - set(commands)) == [], "docs/cli.md has sections for commands the parser lacks"
    assert len(headings) == len(set(headings)), "a subcommand has two sections in docs/cli.md"


def test_the_environment_page_renders_every_variable_of_settings():
    """The mkdocs hook turns the page's marker into one row per ENVIRONMENT entry, with its text."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    source = (DOCS / "environment.md").read_text()
    assert hooks.MARKER in source
    page = hooks.render(source)
    rows = dict(re.findall(r"^\| `(GENE_ASSETS_[A-Z0-9_]+)` \| (.+) \|$", page, flags=re.M))
    assert rows == {name: text.replace("|", "&#124;") for name, text in ENVIRONMENT.items()}
    assert hooks.MARKER not in page


def test_the_readme_excerpt_is_the_board_of_the_results_page():
    """Each cell of the README's excerpt equals the results page's board cell of the same backbone, view and column,
    and both name the same release and code commit."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    results = (DOCS / "results.md").read_text()
    excerpt = table_rows(readme.split("```\n| backbone", 1)[1].split("```", 1)[0].join(["| backbone", ""]))
    board_text = results.split("## Board (all genes)", 1)[1].split("\n## ", 1)[0]
    board = table_rows(board_text)
    header, rows = board[0], {(r[0], r[1]): dict(zip(board[0], r)) for r in board[1:]}
    assert len(excerpt) >= 3 and set(excerpt[0]) <= set(header), excerpt[0]
    for row in excerpt[1:]:
        shown = dict(zip(excerpt[0], row))
        assert shown == {c: rows[shown["backbone"], shown["view"]][c] for c in excerpt[0]}, shown
    release, code = re.search(
        r"from release \*\*(embeddings-v\d+)\*\*.*computed with code `([0-9a-f]{7})", results
    ).groups()
    assert f"({release}," in readme and f"commit {code})" in readme
