"""The hot path compiled with mypyc, used only while it matches the source it was built from.

The detectors and the per-event pipeline are typed Python; mypyc compiles the same files
into C extension modules, about 1.5 times as fast (docs/profiling.md). The source stays
the truth: a build lives in `.cache/native/<digest>/`, keyed by a digest of every module
it could depend on, and `activate` puts it in front of the source only when that digest
is today's. An edited file therefore never runs stale compiled code; it runs as plain
Python until `make native` builds it again. `TOLLMON_NATIVE=0` runs plain Python always.

Nothing else changes: the compiled modules keep their names (`detectors.queue`), so the
packages' `__path__` lists the build's folder before the source folder.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("detectors", "tollmon")
# The per-event path. Record types that msgspec encodes and the Faust layer stay plain:
# msgspec reads annotations that compiled modules do not keep.
COMPILED = (
    "detectors/approach.py",
    "detectors/beyond.py",
    "detectors/congestion.py",
    "detectors/curves.py",
    "detectors/data_gap.py",
    "detectors/etc_health.py",
    "detectors/headway.py",
    "detectors/lanes.py",
    "detectors/lane_health.py",
    "detectors/ordering.py",
    "detectors/queue.py",
    "detectors/series.py",
    "detectors/spillback.py",
    "detectors/stall.py",
    "detectors/upstream.py",
    "tollmon/dedup.py",
    "tollmon/ingest.py",
    "tollmon/pipeline.py",
    "tollmon/recorder.py",
    "tollmon/validation.py",
)
# The shared library's name: `<group>__mypyc`, at the top of the build folder.
GROUP = "tollmon_native"
DIGEST_LENGTH = 16


class _Activation:
    """What `activate` decided, once per process."""

    done = False
    build: Path | None = None
    reason = "not activated"


_activation = _Activation()


def source_digest(root: Path = ROOT) -> str:
    """Every source a compiled module could be typed against, and the interpreter's ABI.

    mypyc inlines facts of the modules it imports (Final constants, class layouts), so
    all of both packages count, not only the compiled files. The compiler is not part of
    it: a build carries its own runtime, so running one needs no mypy installed; `build`
    replaces a build made by another compiler version.
    """
    digest = hashlib.sha256()
    digest.update(f"{sysconfig.get_config_var('SOABI')}\0".encode())
    digest.update("\0".join(COMPILED).encode())
    for package in PACKAGES:
        for source in sorted((root / package).glob("*.py")):
            digest.update(f"{package}/{source.name}\0".encode() + source.read_bytes())
    return digest.hexdigest()[:DIGEST_LENGTH]


def build_dir(root: Path = ROOT) -> Path:
    """Where the build for today's source lives (it may not exist)."""
    return root / ".cache" / "native" / source_digest(root)


def activate() -> None:
    """Use the compiled modules if a build for today's source exists (idempotent).

    Called by both packages' `__init__`, before any module of theirs is imported.
    """
    state = _activation
    if state.done:
        return
    state.done = True
    if os.environ.get("TOLLMON_NATIVE", "1") == "0":
        state.reason = "TOLLMON_NATIVE=0"
        return
    build = build_dir()
    if not (build / "complete").exists():
        state.reason = "no build for this source (make native)"
        return
    state.build = build
    sys.path.append(str(build))  # the shared library every compiled module loads
    for package in PACKAGES:
        module = sys.modules.get(package) or importlib.import_module(package)
        module.__path__.insert(0, str(build / package))


def status() -> str:
    """One line for logs and benchmark reports: compiled or not, and why not."""
    if _activation.build is not None:
        return f"compiled with mypyc (build {_activation.build.name})"
    return f"plain Python: {_activation.reason}"


def is_compiled() -> bool:
    """Whether the compiled modules are the ones imported."""
    return _activation.build is not None


def build(root: Path = ROOT, jobs: int | None = None) -> Path:
    """Compile `COMPILED` for today's source, unless already built; returns the build folder.

    Built in a temporary folder and renamed into place, so an interrupted build is never
    taken for a complete one.
    """
    from mypy.version import __version__ as compiler
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]

    target = build_dir(root)
    complete = target / "complete"
    if complete.exists() and complete.read_text().strip() == f"mypyc {compiler}":
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    cwd = Path.cwd()
    os.chdir(root)  # mypy reads its configuration from pyproject.toml here
    try:
        extensions = mypycify(list(COMPILED), group_name=GROUP, target_dir=str(work / "c"))
        dist = Distribution({"name": GROUP, "ext_modules": extensions})
        command = dist.get_command_obj("build_ext")
        command.build_lib = str(work / "lib")
        command.build_temp = str(work / "tmp")
        command.parallel = jobs or os.cpu_count() or 1
        dist.run_command("build_ext")
    finally:
        os.chdir(cwd)
    (work / "lib" / "complete").write_text(f"mypyc {compiler}\n")
    if target.exists():  # another compiler's build, or one made meanwhile: this one wins
        shutil.rmtree(target)
    (work / "lib").rename(target)
    shutil.rmtree(work)
    _prune(target)
    return target


def _prune(keep: Path) -> None:
    """Builds for earlier states of the source are never used again: delete them."""
    for other in keep.parent.iterdir():
        if other != keep and other.is_dir() and len(other.name) == DIGEST_LENGTH:
            shutil.rmtree(other, ignore_errors=True)
