"""Which source files a stage runs: the static import closure of its modules (issue 10).

One answer for two consumers, so they cannot drift: the ``code``/``code2`` files of
``params.yaml``'s ``runs`` entries (DVC dependencies, checked by ``config.check_runs`` and
``tests/pipeline/test_dvc_deps.py``), and ``train``'s run fingerprint (so a ``last.pt`` written
by other code is never resumed). The closure follows every ``jasrbench`` import, lazy ones
included, plus each package's ``__init__.py``, but not ``jasrbench.models.__init__``'s loop that
registers every architecture (following it would retrain every model when one file changes);
``if TYPE_CHECKING:`` blocks are skipped.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from .files import file_sha256
from .paths import PACKAGE_DIR, REPO_ROOT

PACKAGE = "jasrbench"


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of module ``name`` (``jasrbench.a.b``), or None when it is not a module of the package."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    py = base.with_suffix(".py") if len(parts) > 1 else None
    return py if py is not None and py.is_file() else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST) -> Iterable[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from (n for stmt in child.orelse for n in [stmt, *_walk(stmt)])
            continue
        yield child
        yield from _walk(child)


@lru_cache(maxsize=None)
def _direct_imports(name: str, package_dir: Path, source: str) -> tuple[str, ...]:
    """Module names of the package that ``name``'s source imports (each candidate; unresolvable ones dropped)."""
    is_package = module_file(name, package_dir).name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: list[str] = []
    for node in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append(base)
            # `from pkg import name`: name may be a submodule (imported) or an attribute (not a module).
            found += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return tuple(m for m in found if module_file(m, package_dir) is not None)


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(modules: Iterable[str], package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Repository-relative paths of every package file that importing ``modules`` runs, sorted."""
    seen: set[str] = set()
    todo = [p for m in modules for p in _with_parents(m)]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name, package_dir) is None:
            continue
        seen.add(name)
        source = module_file(name, package_dir).read_text(encoding="utf-8")
        for dep in _direct_imports(name, package_dir, source):
            todo += _with_parents(dep)
    root = package_dir.parent
    return sorted(module_file(m, package_dir).relative_to(root).as_posix() for m in seen)


def model_module(arch: str) -> str:
    """The module defining registered model ``arch`` (e.g. ``jasrbench.models.superfan``)."""
    from .models import spec

    return spec(arch).builder.__module__


def model_code(arch: str) -> list[str]:
    """The files ``arch``'s own module pulls in from ``jasrbench/models`` (e.g. superfan → fsrnet.py)."""
    return [f for f in import_closure([model_module(arch)]) if f.startswith(f"{PACKAGE}/models/")]


def stage_code(entry_modules: Iterable[str], arch: str | None = None) -> list[str]:
    """Every file a stage runs: the closure of its entry modules and, if given, of its model."""
    return import_closure([*entry_modules, *([model_module(arch)] if arch else [])])


def code_digest(files: Iterable[str], root: Path = REPO_ROOT) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of each file's content, keyed by its repository-relative path."""
    return {f: file_sha256(root / f)[:16] for f in sorted(files)}


# Model files declared for every train/evaluate stage in dvc.yaml; the rest of a model's closure
# under jasrbench/models/ is model-specific and travels in the runs entries (config.check_runs).
SHARED_MODEL_FILES = frozenset(f"{PACKAGE}/models/{n}" for n in (
    "__init__.py", "base.py", "blocks.py", "registry.py", "adversarial.py"))


def model_specific_code(arch: str) -> list[str]:
    """The model's own file first, then the other model files it imports (e.g. superfan → fsrnet.py)."""
    own = module_file(model_module(arch)).relative_to(PACKAGE_DIR.parent).as_posix()
    rest = [f for f in model_code(arch) if f != own and f not in SHARED_MODEL_FILES]
    return [own, *rest]
