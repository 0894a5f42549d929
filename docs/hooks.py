"""mkdocs hook: the environment-variable table is rendered from `gene_assets.settings.ENVIRONMENT` at build time, so
the page and the code cannot disagree."""

import importlib.util
from pathlib import Path

MARKER = "<!-- environment-variables -->"
SETTINGS = Path(__file__).resolve().parent.parent / "gene_assets" / "settings.py"


def environment() -> dict[str, str]:
    """settings.ENVIRONMENT, read from the checkout (the docs virtualenv does not install the package)."""
    spec = importlib.util.spec_from_file_location("gene_assets_settings", SETTINGS)
    settings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(settings)
    return settings.ENVIRONMENT


def environment_table(variables: dict[str, str]) -> str:
    rows = [f"| `{name}` | {text.replace('|', '&#124;')} |" for name, text in variables.items()]
    return "\n".join(["| variable | what it sets |", "|---|---|", *rows])


def render(markdown: str) -> str:
    """The page with its environment-variable marker replaced by the table."""
    return markdown.replace(MARKER, environment_table(environment()))


def on_page_markdown(markdown, page, config, files):
    return render(markdown)
