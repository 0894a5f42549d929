"""Bioconductor annotation databases (org.Hs.eg.db, GO.db) as verified SQLite files.

Default source: Debian's packages (`apt-get download`, unpacked with `dpkg -x`); alternative: the
Bioconductor source tarballs (online). Either way the SQLite file is verified by sha256 and cached
outside git.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from ..errors import GeneAssetsError
from ..settings import gene_assets_home
from ..storage import atomic_path, sha256_file


@dataclass(frozen=True)
class AnnotationPackage:
    name: str
    version: str
    debian_package: str
    debian_version: str
    debian_path: str
    tarball_url: str
    tarball_path: str
    sqlite_sha256: str

    @property
    def sqlite_name(self) -> str:
        return Path(self.debian_path).name


PACKAGES = {
    "org.Hs.eg.db": AnnotationPackage(
        name="org.Hs.eg.db",
        version="3.16.0",
        debian_package="r-bioc-org.hs.eg.db",
        debian_version="3.16.0-1",
        debian_path="usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite",
        tarball_url="https://bioconductor.org/packages/3.16/data/annotation/src/contrib/org.Hs.eg.db_3.16.0.tar.gz",
        tarball_path="org.Hs.eg.db/inst/extdata/org.Hs.eg.sqlite",
        sqlite_sha256="bba36057dd3100a099e8054511b34d831349761971829a72b84859d2efe34605",
    ),
    "GO.db": AnnotationPackage(
        name="GO.db",
        version="3.16.0",
        debian_package="r-bioc-go.db",
        debian_version="3.16.0-1",
        debian_path="usr/lib/R/site-library/GO.db/extdata/GO.sqlite",
        tarball_url="https://bioconductor.org/packages/3.16/data/annotation/src/contrib/GO.db_3.16.0.tar.gz",
        tarball_path="GO.db/inst/extdata/GO.sqlite",
        sqlite_sha256="b36edf3e7ba7d5869e587651107421c4f5c4444037cb18e26cd2687698e4a0d0",
    ),
}


class AnnotationDatabaseError(GeneAssetsError, RuntimeError):
    """An annotation database could not be obtained or failed verification."""


class AnnotationDatabases(ConfigurableResource):
    """Verified, cached SQLite files of org.Hs.eg.db and GO.db."""

    cache_dir: str = Field(
        default=str(gene_assets_home() / "cache" / "bioconductor"),
        description="Where the verified SQLite files are kept (one directory per package version).",
    )
    source: Literal["debian", "bioconductor"] = Field(
        default="debian",
        description=(
            "Where the packages come from: debian (Debian's packages, `apt-get download`) or bioconductor (the "
            "source tarballs, online); verified by sha256 either way."
        ),
    )

    def sqlite_path(self, package: str) -> Path:
        """Path of the package's verified SQLite file, fetching it on first use."""
        pkg = PACKAGES[package]
        target = Path(self.cache_dir) / f"{pkg.name}_{pkg.version}" / pkg.sqlite_name
        if target.exists() and self._verified(target, pkg):
            return target
        with tempfile.TemporaryDirectory(prefix="bioc-", dir=_mkdir(Path(self.cache_dir))) as tmp:
            extracted = (
                self._fetch_debian(pkg, Path(tmp)) if self.source == "debian" else self._fetch_tarball(pkg, Path(tmp))
            )
            actual = sha256_file(extracted)
            if actual != pkg.sqlite_sha256:
                raise AnnotationDatabaseError(
                    f"{pkg.name}: {pkg.sqlite_name} from the {self.source} source has sha256 {actual}, "
                    f"expected {pkg.sqlite_sha256}. The package differs from the pinned release {pkg.version}; "
                    "nothing was cached. Check the source or update the pin in gene_assets/sources/bioconductor.py."
                )
            with atomic_path(target) as tmp_target:
                shutil.move(str(extracted), tmp_target)
        self._mark_verified(target, pkg)
        return target

    def connect(self, package: str) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.sqlite_path(package)}?mode=ro", uri=True)

    @staticmethod
    def _marker(target: Path) -> Path:
        return target.with_suffix(".sha256")

    def _verified(self, target: Path, pkg: AnnotationPackage) -> bool:
        marker = self._marker(target)
        stat = target.stat()
        stamp = f"{pkg.sqlite_sha256} {stat.st_size} {stat.st_mtime_ns}"
        if marker.exists() and marker.read_text() == stamp:
            return True
        if sha256_file(target) != pkg.sqlite_sha256:
            target.unlink()
            return False
        marker.write_text(stamp)
        return True

    def _mark_verified(self, target: Path, pkg: AnnotationPackage) -> None:
        stat = target.stat()
        self._marker(target).write_text(f"{pkg.sqlite_sha256} {stat.st_size} {stat.st_mtime_ns}")

    @staticmethod
    def _fetch_debian(pkg: AnnotationPackage, workdir: Path) -> Path:
        spec = f"{pkg.debian_package}={pkg.debian_version}"
        result = subprocess.run(["apt-get", "download", spec], cwd=workdir, capture_output=True, text=True)
        debs = list(workdir.glob(f"{pkg.debian_package}_*.deb"))
        if result.returncode != 0 or not debs:
            raise AnnotationDatabaseError(
                f"`apt-get download {spec}` failed: {result.stderr.strip() or result.stdout.strip()}. "
                "Run `apt-get update` first (as root), or use source 'bioconductor' where the network allows."
            )
        unpacked = workdir / "unpacked"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(unpacked)], check=True)
        path = unpacked / pkg.debian_path
        if not path.exists():
            raise AnnotationDatabaseError(f"{debs[0].name} does not contain {pkg.debian_path}.")
        return path

    @staticmethod
    def _fetch_tarball(pkg: AnnotationPackage, workdir: Path) -> Path:
        archive = workdir / Path(pkg.tarball_url).name
        try:
            with urllib.request.urlopen(pkg.tarball_url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise AnnotationDatabaseError(
                f"Could not download {pkg.tarball_url}: {exc}. Use source 'debian' offline."
            ) from exc
        with tarfile.open(archive) as tar:
            try:
                member = tar.getmember(pkg.tarball_path)
            except KeyError as exc:
                raise AnnotationDatabaseError(f"{archive.name} does not contain {pkg.tarball_path}.") from exc
            tar.extract(member, workdir, filter="data")
        return workdir / pkg.tarball_path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
