"""Which source files a stage runs: the static import closure of its modules (issue 10).

One answer for two consumers, so they cannot drift: the ``code``/``code2`` files of
``params.yaml``'s ``runs`` entries (DVC dependencies, checked by ``config.check_runs`` and
``tests/pipeline/test_dvc_deps.py``), and ``train``'s run fingerprint (so a ``last.pt`` written
by other code is never resumed). The closure follows every ``jasrbench`` import, lazy ones
included, plus each package's ``__init__.py``, but not ``jasrbench.models.__init__``'s loop that
registers every architecture (following it would retrain every model when one file changes);
``if TYPE_CHECKING:`` blocks are skipped.

A plugin model (an entry point of another installed package, issue 27) is followed into its own
top-level package too, so a change to ``mypkg/model.py`` retrains that model and nothing else. Its
files are named relative to the repository when they lie inside it (an editable install of a folder
of the repository), else by their absolute path (an installed package: site-packages).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

from .files import file_sha256
from .paths import PACKAGE_DIR, REPO_ROOT

PACKAGE = "jasrbench"


def module_file(name: str, package_dir: Path = PACKAGE_DIR, roots: tuple[tuple[str, Path], ...] = ()) -> Path | None:
    """The file of module ``name`` (``jasrbench.a.b``), or None when it is not a module of the package
    (or of one of ``roots``: (top-level package name, its folder) of plugin packages to follow)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        folder = dict(roots).get(parts[0])
        if folder is None:
            return None
        if folder.is_file():  # a single-module plugin (mypkg.py)
            return folder if len(parts) == 1 else None
        package_dir = folder
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
def _direct_imports(name: str, package_dir: Path, source: str,
                    roots: tuple[tuple[str, Path], ...] = ()) -> tuple[str, ...]:
    """Module names of the package that ``name``'s source imports (each candidate; unresolvable ones dropped)."""
    is_package = module_file(name, package_dir, roots).name == "__init__.py"
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
    return tuple(m for m in found if module_file(m, package_dir, roots) is not None)


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(modules: Iterable[str], package_dir: Path = PACKAGE_DIR,
                   roots: tuple[tuple[str, Path], ...] = ()) -> list[str]:
    """Repository-relative paths of every package file that importing ``modules`` runs, sorted
    (files of the plugin packages ``roots`` as :func:`display_path` names them)."""
    seen: set[str] = set()
    todo = [p for m in modules for p in _with_parents(m)]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name, package_dir, roots) is None:
            continue
        seen.add(name)
        source = module_file(name, package_dir, roots).read_text(encoding="utf-8")
        for dep in _direct_imports(name, package_dir, source, roots):
            todo += _with_parents(dep)
    root = package_dir.parent
    return sorted(module_file(m, package_dir).relative_to(root).as_posix() if m.split(".")[0] == PACKAGE
                  else display_path(module_file(m, package_dir, roots)) for m in seen)


def display_path(path: Path) -> str:
    """How a dependency outside the package is named: relative to the repository when it lies inside it
    and outside the Python environment (an editable install of a folder of the repository), else absolute."""
    path = Path(path).resolve()
    inside_env = any(path.is_relative_to(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix})
    if path.is_relative_to(REPO_ROOT) and not inside_env:
        return path.relative_to(REPO_ROOT).as_posix()
    return path.as_posix()


def model_module(arch: str) -> str:
    """The module defining registered model ``arch`` (e.g. ``jasrbench.models.superfan``)."""
    from .models import spec

    return spec(arch).builder.__module__


@lru_cache(maxsize=None)
def _top_folder(top: str) -> Path | None:
    found = importlib.util.find_spec(top)
    if found is None:
        return None
    if found.submodule_search_locations:
        return Path(list(found.submodule_search_locations)[0]).resolve()
    return Path(found.origin).resolve() if found.origin else None


def plugin_roots(arch: str | None) -> tuple[tuple[str, Path], ...]:
    """((top-level package, its folder),) of a plugin model's module; () for a built-in model."""
    if not arch:
        return ()
    top = model_module(arch).split(".")[0]
    folder = _top_folder(top) if top != PACKAGE else None
    return ((top, folder),) if folder is not None else ()


def model_code(arch: str) -> list[str]:
    """The files ``arch``'s own module pulls in from ``jasrbench/models`` (e.g. superfan → fsrnet.py), and for a
    plugin model the files of its own package."""
    return [f for f in import_closure([model_module(arch)], roots=plugin_roots(arch))
            if f.startswith(f"{PACKAGE}/models/") or not f.startswith(f"{PACKAGE}/")]


def stage_code(entry_modules: Iterable[str], arch: str | None = None) -> list[str]:
    """Every file a stage runs: the closure of its entry modules and, if given, of its model (into a
    plugin model's own package)."""
    return import_closure([*entry_modules, *([model_module(arch)] if arch else [])], roots=plugin_roots(arch))


def code_digest(files: Iterable[str], root: Path = REPO_ROOT) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of each file's content, keyed by its repository-relative path."""
    return {f: file_sha256(root / f)[:16] for f in sorted(files)}


# Model files declared for every train/evaluate stage in dvc.yaml; the rest of a model's closure
# under jasrbench/models/ is model-specific and travels in the runs entries (config.check_runs).
SHARED_MODEL_FILES = frozenset(f"{PACKAGE}/models/{n}" for n in (
    "__init__.py", "base.py", "blocks.py", "registry.py", "adversarial.py"))


def model_specific_code(arch: str) -> list[str]:
    """The model's own file first, then the other model files it imports (e.g. superfan → fsrnet.py; a plugin
    model's other files of its package)."""
    module, roots = model_module(arch), plugin_roots(arch)
    path = module_file(module, PACKAGE_DIR, roots)
    own = path.relative_to(PACKAGE_DIR.parent).as_posix() if module.split(".")[0] == PACKAGE else display_path(path)
    rest = [f for f in model_code(arch) if f != own and f not in SHARED_MODEL_FILES]
    return [own, *rest]


def plugin_folder(arch: str) -> str | None:
    """A plugin model's package folder as a dependency path (None for a built-in model or a one-file plugin)."""
    roots = plugin_roots(arch)
    if not roots or roots[0][1].is_file():
        return None
    return display_path(roots[0][1])


# The module each DVC stage loop's command runs (`jasrbench COMMAND` → its module, jasrbench/cli.py).
LOOP_ENTRY = {"prepare": "jasrbench.data.prepare", "pretrain": "jasrbench.pretrain", "train": "jasrbench.train",
              "evaluate": "jasrbench.evaluate", "evaluate_untrained": "jasrbench.evaluate",
              "robustness": "jasrbench.evaluate", "robustness_untrained": "jasrbench.evaluate",
              "collect": "jasrbench.collect", "report": "jasrbench.report.build"}


def loop_code(loop: str) -> list[str]:
    """The package files ``dvc.yaml`` declares for a stage loop: what its command runs for any built-in model
    of its kind, less each model's own files (those travel in the runs entries' ``code``/``code2``). One list
    for the whole loop (DVC's foreach), so a file only Super-FAN imports is declared for every train stage."""
    from .models import available, plugins, spec

    builtin = [a for a in available() if a not in plugins()]
    trained = [a for a in builtin if getattr(spec(a).builder, "trainable", True)]
    archs = {"train": trained, "evaluate": trained, "robustness": trained,
             "pretrain": [a for a in trained if getattr(spec(a).builder, "pretrain_part", None)],
             "evaluate_untrained": [a for a in builtin if a not in trained],
             "robustness_untrained": [a for a in builtin if a not in trained]}.get(loop, [None])
    own = {f for a in builtin for f in model_specific_code(a)}
    return sorted({f for a in archs for f in stage_code([LOOP_ENTRY[loop]], a) if f not in own})
