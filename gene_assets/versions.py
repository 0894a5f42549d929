"""Code versions: what Dagster compares with the code version recorded on an asset's latest materialization.

An asset's code version is a sha256 over the pinned requirements and the code that computes it, as parsed (ast.dump:
comments and formatting do not count): the module-level statement that binds the asset and, transitively, every
module-level function, class and constant it names, followed through `from … import name` into the other gene_assets
modules; a module imported as a whole (`from . import x`, `import gene_assets.x`) counts whole, with every module it
imports. So an edit to the leaderboard's rendering changes the code version of the assets whose code calls it, not
the embeddings', and an edit to one helper of tasks/assets.py changes only the assets that reach it."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import sys
import typing
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from dagster import AssetKey, AssetsDefinition, Config

from .settings import PROJECT_ROOT
from .storage import sha256_file, write_bytes_atomic

PACKAGE = "gene_assets"
REQUIREMENTS = PROJECT_ROOT / "requirements.lock"
"""The pinned requirements count for every asset."""


class SourceTree:
    """The package's source under `root` (the installed checkout by default; a copy in tests), each module parsed
    once. The versions it computes are kept beside the package's bytecode (`__pycache__/code_versions.json`), keyed
    by the sha256 of every source file, the pinned requirements and the Python version (ast.dump's format), so a
    process whose source is unchanged reads them instead of parsing."""

    def __init__(self, root: Path = PROJECT_ROOT):
        self.root = Path(root)
        self._parsed: dict[str, ast.Module] = {}
        self._scopes: dict[str, tuple[dict, dict]] = {}
        self._closures: dict[str, frozenset[str]] = {}
        self._imported: dict[str, list[str]] = {}
        self._references: dict[tuple[str, int, int], list[tuple[str, str | None]]] = {}
        self._dumps: dict[tuple[str, int, int] | str, bytes] = {}
        self._stored: dict[str, str] | None = None
        self._digest: str | None = None

    @property
    def store_path(self) -> Path:
        return self.root / PACKAGE / "__pycache__" / "code_versions.json"

    def source_digest(self) -> str:
        """sha256 of every source file of the package, the pinned requirements and the Python version."""
        if self._digest is None:
            digest = hashlib.sha256(f"{sys.version_info[0]}.{sys.version_info[1]}".encode())
            digest.update(REQUIREMENTS.read_bytes() if REQUIREMENTS.is_file() else b"")
            for path in sorted((self.root / PACKAGE).rglob("*.py")):
                digest.update(b"\0" + path.relative_to(self.root).as_posix().encode() + b"\0" + path.read_bytes())
            self._digest = digest.hexdigest()
        return self._digest

    def stored_versions(self) -> dict[str, str]:
        """{"module:name": code version} stored for this exact source; empty when there is none or it is unreadable."""
        if self._stored is None:
            try:
                stored = json.loads(self.store_path.read_text())
                valid = stored["source"] == self.source_digest() and isinstance(stored["versions"], dict)
                self._stored = dict(stored["versions"]) if valid else {}
            except (OSError, ValueError, KeyError, TypeError):
                self._stored = {}
        return self._stored

    def store_versions(self) -> None:
        """Keep the versions computed so far for the next process; skipped where the package is read-only."""
        record = {"source": self.source_digest(), "versions": dict(sorted(self.stored_versions().items()))}
        try:
            if not self.store_path.is_file() or json.loads(self.store_path.read_text()) != record:
                write_bytes_atomic(self.store_path, json.dumps(record, indent=0).encode())
        except (OSError, ValueError):
            pass

    def path(self, module: str) -> Path | None:
        base = self.root.joinpath(*module.split("."))
        return next((p for p in (base / "__init__.py", base.with_suffix(".py")) if p.is_file()), None)

    def parsed(self, module: str) -> ast.Module:
        if module not in self._parsed:
            path = self.path(module)
            self._parsed[module] = ast.parse(path.read_text(), filename=str(path)) if path else ast.Module([], [])
        return self._parsed[module]

    def is_package(self, module: str) -> bool:
        return self.path(module).name == "__init__.py"

    def resolve(self, module: str, node: ast.Import | ast.ImportFrom) -> dict[str, tuple[str, str | None]]:
        """{bound name: (gene_assets module, name in it)} for one import statement of `module`; the name is None
        where the bound name is a module itself."""
        if isinstance(node, ast.Import):
            return {
                (a.asname or a.name).split(".")[0]: (a.name, None) for a in node.names if a.name.startswith(PACKAGE)
            }
        if node.level:
            parts = module.split(".") if self.is_package(module) else module.split(".")[:-1]
            base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if not base.startswith(PACKAGE):
            return {}
        return {
            a.asname or a.name: (f"{base}.{a.name}", None) if self.path(f"{base}.{a.name}") else (base, a.name)
            for a in node.names
            if a.name != "*"
        }

    def module_scope(self, module: str) -> tuple[dict[str, list[ast.stmt]], dict[str, tuple[str, str | None]]]:
        """The module-level statements binding each name of `module`, and its module-level imports (`resolve`)."""
        if module in self._scopes:
            return self._scopes[module]
        bindings: dict[str, list[ast.stmt]] = {}
        imports: dict[str, str] = {}
        for statement in self.parsed(module).body:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                imports.update(self.resolve(module, statement))
            for bound in bound_names(statement):
                bindings.setdefault(bound, []).append(statement)
        self._scopes[module] = bindings, imports
        return bindings, imports

    def needed(self, module: str, name: str) -> tuple[dict[tuple[str, int], ast.stmt], set[str]]:
        """What computing `module`.`name` runs: {(module, line): statement} of the module-level statements that bind
        it and, transitively, every module-level name they use, followed through `from … import name` into other
        gene_assets modules; and the modules used whole (`import gene_assets.x`, `from . import x`)."""
        statements: dict[tuple[str, int], ast.stmt] = {}
        whole: set[str] = set()
        seen: set[tuple[str, str]] = set()
        todo = [(module, name)]
        while todo:
            current, symbol = todo.pop()
            if (current, symbol) in seen:
                continue
            seen.add((current, symbol))
            bindings, imports = self.module_scope(current)
            if symbol in imports:
                todo.append(self.follow(imports[symbol], whole))
            for statement in bindings.get(symbol, []):
                if (current, statement.lineno) in statements:
                    continue
                statements[(current, statement.lineno)] = statement
                todo += [self.follow(target, whole) for target in self.references(current, statement)]
        return statements, whole

    def references(self, module: str, statement: ast.stmt) -> list[tuple[str, str | None]]:
        """What a module-level statement names: (module, name) of each name it uses, and the (module, name or None)
        targets of the imports inside it; walked once per statement."""
        key = (module, statement.lineno, statement.col_offset)
        if key not in self._references:
            found: list[tuple[str, str | None]] = []
            for node in ast.walk(statement):
                if isinstance(node, ast.Name):
                    found.append((module, node.id))
                elif isinstance(node, (ast.Import, ast.ImportFrom)) and node is not statement:
                    found += self.resolve(module, node).values()
            self._references[key] = list(dict.fromkeys(found))
        return self._references[key]

    def dump(self, module: str, statement: ast.stmt | None = None) -> bytes:
        """ast.dump of a module-level statement (or of the whole module), made once."""
        key = (module, statement.lineno, statement.col_offset) if statement is not None else module
        if key not in self._dumps:
            self._dumps[key] = ast.dump(statement if statement is not None else self.parsed(module)).encode()
        return self._dumps[key]

    @staticmethod
    def follow(target: tuple[str, str | None], whole: set[str]) -> tuple[str, str]:
        """The (module, name) to visit for an imported name; a module imported as such is used whole."""
        module, symbol = target
        if symbol is None:
            whole.add(module)
            return module, ""
        return module, symbol

    def module_closure(self, module: str) -> frozenset[str]:
        """`module` and every gene_assets module it imports, transitively."""
        if module in self._closures:
            return self._closures[module]
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += self.imported_modules(current)
        self._closures[module] = frozenset(seen)
        return self._closures[module]

    def imported_modules(self, module: str) -> list[str]:
        """The gene_assets modules `module` imports anywhere in its source (walked once per module)."""
        if module not in self._imported:
            self._imported[module] = [
                m
                for node in ast.walk(self.parsed(module))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for m, _ in self.resolve(module, node).values()
                if self.path(m)
            ]
        return self._imported[module]

    def code_version(self, module: str, name: str) -> str:
        """sha256 of what computes `module`.`name` (see the module docstring) and the pinned requirements."""
        stored = self.stored_versions()
        if f"{module}:{name}" not in stored:
            stored[f"{module}:{name}"] = self.computed_version(module, name)
        return stored[f"{module}:{name}"]

    def computed_version(self, module: str, name: str) -> str:
        statements, whole = self.needed(module, name)
        modules = sorted({m for w in whole for m in self.module_closure(w)})
        digest = hashlib.sha256(REQUIREMENTS.read_bytes() if REQUIREMENTS.is_file() else b"")
        for (where, _), statement in sorted(statements.items()):
            digest.update(b"\0" + where.encode() + b"\0" + self.dump(where, statement))
        for dependency in modules:
            digest.update(b"\0" + dependency.encode() + b"\0" + self.dump(dependency))
        return digest.hexdigest()


@functools.cache
def package_source() -> SourceTree:
    """The installed checkout's source, parsed once per process."""
    return SourceTree()


def bound_names(statement: ast.stmt) -> list[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    targets = (
        statement.targets
        if isinstance(statement, ast.Assign)
        else [statement.target]
        if isinstance(statement, (ast.AnnAssign, ast.AugAssign))
        else []
    )
    return [n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)]


def asset_bindings(modules: Iterable[ModuleType]) -> dict[AssetKey, tuple[str, str]]:
    """{asset key: (module, module-level name)} of every asset defined in `modules`."""
    return {
        key: (module.__name__, name)
        for module in modules
        for name, value in vars(module).items()
        if isinstance(value, AssetsDefinition)
        for key in value.keys
    }


def code_versions(modules: Iterable[ModuleType], tree: SourceTree | None = None) -> dict[AssetKey, str]:
    """The code version of every asset defined in `modules`, computed from `tree`."""
    tree = tree or package_source()
    versions = {key: tree.code_version(module, name) for key, (module, name) in asset_bindings(modules).items()}
    tree.store_versions()
    return versions


OUTPUT_RESOURCE_SETTINGS = {"embedding_device": ("device", "gpu_precision", "cpu_precision")}
"""Resource settings that change what an asset stores (a configured CPU precision changes the vectors)."""


def output_settings(compute_fn, op_config: dict | None, resources) -> dict:
    """The settings an output is computed with besides its code and inputs: the asset's config with every default
    filled in (the evaluation protocol, the views, …), the sha256 of every file the config names, and the
    OUTPUT_RESOURCE_SETTINGS of the resources it uses.
    Recorded on every materialization (metadata `output_settings`) and compared with a run's before it is launched."""
    config_class = typing.get_type_hints(compute_fn).get("config")
    record = {}
    if isinstance(config_class, type) and issubclass(config_class, Config):
        record["config"] = config_class(**(op_config or {})).model_dump(mode="json")
    files = sorted({value for value in config_strings(op_config or {}) if len(value) < 4096 and Path(value).is_file()})
    if files:  # a user's h5ad named in the config: its content, not its name
        record["files"] = {path: sha256_file(Path(path)) for path in files}
    parameters = inspect.signature(compute_fn).parameters
    for name, fields in OUTPUT_RESOURCE_SETTINGS.items():
        resource = resources.get(name) if isinstance(resources, dict) else getattr(resources, name, None)
        if name in parameters and resource is not None:
            record[name] = {field: getattr(resource, field) for field in fields}
    return record


def config_strings(config) -> list[str]:
    """Every string in a (nested) config."""
    if isinstance(config, dict):
        return [s for value in config.values() for s in config_strings(value)]
    if isinstance(config, (list, tuple)):
        return [s for value in config for s in config_strings(value)]
    return [config] if isinstance(config, str) else []
