"""mkdocs hook: the environment-variable table is rendered from `gene_assets.settings.ENVIRONMENT` at build time, so
the page and the code cannot disagree."""

import importlib
import sys
from pathlib import Path

MARKER = "<!-- environment-variables -->"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def environment() -> dict[str, str]:
    """settings.ENVIRONMENT, read from the checkout (the docs virtualenv does not install the package; importing the
    package and its settings needs nothing outside the standard library)."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    return importlib.import_module("gene_assets.settings").ENVIRONMENT


def environment_table(variables: dict[str, str]) -> str:
    rows = [f"| `{name}` | {text.replace('|', '&#124;')} |" for name, text in variables.items()]
    return "\n".join(["| variable | what it sets |", "|---|---|", *rows])


def render(markdown: str) -> str:
    """The page with its environment-variable marker replaced by the table."""
    return markdown.replace(MARKER, environment_table(environment()))


def on_page_markdown(markdown, page, config, files):
    return render(markdown)
