"""Security defaults: pinned model revisions, remote code only where allowlisted, the UI on localhost, no secrets."""

import re
import subprocess
from dataclasses import fields

from gene_assets.embeddings.backbone import Backbone
from gene_assets.embeddings.registry import BACKBONES
from gene_assets.settings import PROJECT_ROOT

SECRET_PATTERNS = {
    "OpenAI key": re.compile(r"sk-[A-Za-z0-9_-]{20,}"),
    "Hugging Face token": re.compile(r"hf_[A-Za-z0-9]{30,}"),
    "NCBI API key": re.compile(r"api_key\s*=\s*['\"][0-9a-f]{36}['\"]"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def test_every_hub_model_is_pinned_to_a_commit_and_remote_code_is_allowlisted():
    hub = [b for b in BACKBONES.values() if b.kind == "sentence_transformers"]
    assert hub and all(re.fullmatch(r"[0-9a-f]{40}", b.revision) for b in hub), [b.name for b in hub]
    assert {b.name for b in BACKBONES.values() if b.trust_remote_code} == {"llama-embed-nemotron-8b"}


def test_ui_binds_to_localhost_unless_configured():
    dry_run = subprocess.run(["make", "-n", "ui"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    assert "dg dev --host 127.0.0.1" in dry_run
    other = subprocess.run(
        ["make", "-n", "ui", "UI_HOST=0.0.0.0"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "dg dev --host 0.0.0.0" in other


def test_no_secret_is_tracked_and_keys_come_only_from_the_environment():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in tracked:
        path = PROJECT_ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: {what}" for what, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert not found
    # a backbone names the environment variable that holds its key; there is no field for the key itself
    assert "api_key" not in {f.name for f in fields(Backbone)}
    assert BACKBONES["text-embedding-ada-002"].api_key_env == "OPENAI_API_KEY"
