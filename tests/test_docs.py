"""The docs site follows the code: every subcommand of the parser has its section in the command-line page, and the
environment-variable page renders every variable of settings.ENVIRONMENT."""

import argparse
import importlib.util
import re

from gene_assets.cli import build_parser
from gene_assets.settings import ENVIRONMENT, PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"


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
