"""The one-machine namespace lab (`pha lab`). `Lab` is imported on first use."""
from __future__ import annotations

__all__ = ["Lab", "LabError", "LabCommandError"]


def __getattr__(name: str):
    if name in __all__:
        from pha.lab import core
        return getattr(core, name)
    raise AttributeError(f"module 'pha.lab' has no attribute {name!r}")
