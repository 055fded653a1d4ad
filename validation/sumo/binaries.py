"""Where the SUMO binaries of the `eclipse-sumo` wheel are."""

from __future__ import annotations

import importlib
from pathlib import Path


def sumo_home() -> Path:
    """SUMO_HOME of the installed `eclipse-sumo` package (ImportError when it is missing)."""
    # Imported by name: the package ships no type information, and only this path is needed.
    module = importlib.import_module("sumo")
    return Path(str(module.SUMO_HOME))


def sumo_binary(name: str) -> str:
    """Absolute path of one of the wheel's tools, e.g. `sumo` or `netconvert`."""
    path = sumo_home() / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"eclipse-sumo has no {name} binary")
    return str(path)
