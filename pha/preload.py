"""What the agent worker (pha.worker) loads ahead of time, and whether it changed.

`preload` imports every agent and everything pha's modules import anywhere,
lazy imports in functions included (found by reading their source), so a
forked action imports nothing. `loaded_sources` fingerprints the pha modules
loaded; `sources_changed` tells the worker that an upgrade replaced one, so
it steps aside and never runs old code.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Optional

# Imported at start besides what pha's agents import (found in their source).
PRELOAD = ("pyroute2", "psycopg")

FileId = Optional[tuple[int, int, int]]
"""A file's (inode, size, mtime in ns); None when it is gone."""


def loaded_sources() -> dict[str, FileId]:
    """Every loaded pha module's file and its identity (inode, size, mtime)."""
    found = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == "pha" or name.startswith("pha.")):
            found[path] = _file_id(path)
    return found


def sources_changed(sources: dict[str, FileId]) -> bool:
    """Whether any of `sources` was modified, replaced or removed since."""
    return any(_file_id(path) != known for path, known in sources.items())


def _file_id(path: str) -> FileId:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def preload() -> None:
    """Import PRELOAD, every agent, and everything pha's modules import anywhere
    (lazy imports in functions included): a forked action then imports nothing."""
    import pha.agents
    folder = os.path.dirname(pha.agents.__file__)
    queue = [*PRELOAD, *("pha.agents." + entry[:-3] for entry in sorted(os.listdir(folder))
                         if entry.endswith(".py") and entry != "__init__.py")]
    seen: set[str] = set()
    parsed: set[str] = set()
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        module = _import_quietly(name)
        if module is None or module.__name__ in parsed:
            continue
        parsed.add(module.__name__)
        if module.__name__ == "pha" or module.__name__.startswith("pha."):
            queue.extend(_imports_of(module))


def _import_quietly(name: str) -> Optional[ModuleType]:
    """Import `name`, or for "module:name" (from module import name) get that
    name (a lazy package such as pyroute2 loads it on access) or submodule.
    The module imported, or None: for a failure, the action that needs it
    then fails alone, with the traceback in its stderr."""
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
        if not attribute:
            return module
        value = getattr(module, attribute, None)
        if value is None:
            value = importlib.import_module(f"{module_name}.{attribute}")
        return value if isinstance(value, ModuleType) else None
    except Exception:
        return None


def _imports_of(module: ModuleType) -> list[str]:
    """The modules (and "module:name" pairs) a pha module's source imports."""
    path = getattr(module, "__file__", None)
    package = getattr(module, "__package__", None) or ""
    try:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            tree = ast.parse(f.read())
    except (OSError, TypeError, SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            except (ImportError, ValueError):
                continue
            found.append(base)
            found.extend(f"{base}:{alias.name}" for alias in node.names if alias.name != "*")
    return found
