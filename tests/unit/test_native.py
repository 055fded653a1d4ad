"""The compiled hot path (tollmon/native.py): the same outputs as the source, never stale."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tollmon import native
from tollmon.checkpoint import code_fingerprint

# Where a build is expected: CI builds one (make native) before the tests.
REQUIRED = os.environ.get("CI") == "true" and os.environ.get("TOLLMON_NATIVE") != "0"

# Sample traffic through the whole pipeline: 30 min of the example network with ETC
# failures, so that estimates, congestion and lane alerts all come out.
RUN = """
import pickle, sys
from tollmon import native
from tollmon.network import load_network
from tollmon.pipeline import Pipeline, PipelineConfig
from tollmon.simulate import TrafficProfile, generate
network = load_network("config/network.yaml")
pipeline = Pipeline(network, PipelineConfig(max_hold_s=600.0))
estimates, alerts = [], []
profile = TrafficProfile(vehicles_per_hour=2400, etc_failure_rate=0.05)
for event in generate(network, 1_764_300_000_000, 1800, profile, seed=3):
    out = pipeline.process(event, 0.0)
    estimates += out.estimates
    alerts += out.alerts
out = pipeline.finish()
result = (native.is_compiled(), estimates + out.estimates, alerts + out.alerts)
sys.stdout.buffer.write(pickle.dumps(result))
"""


def run(compiled: bool) -> tuple[bool, list[object], list[object]]:
    env = {**os.environ, "TOLLMON_NATIVE": "1" if compiled else "0"}
    done = subprocess.run(
        [sys.executable, "-c", RUN], env=env, capture_output=True, check=True, cwd=native.ROOT
    )
    result: tuple[bool, list[object], list[object]] = pickle.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def built() -> None:
    if not (native.build_dir() / "complete").exists():
        if REQUIRED:
            pytest.fail("no compiled build for this source: `make native` must run first")
        pytest.skip("no compiled build for this source (make native)")


@pytest.mark.usefixtures("built")
def test_the_compiled_pipeline_gives_exactly_the_sources_outputs() -> None:
    compiled, estimates, alerts = run(compiled=True)
    plain, plain_estimates, plain_alerts = run(compiled=False)
    assert (compiled, plain) == (True, False)
    assert len(estimates) > 1000
    assert alerts
    assert estimates == plain_estimates
    assert alerts == plain_alerts


@pytest.mark.usefixtures("built")
def test_tests_and_workers_here_run_the_compiled_build() -> None:
    assert native.is_compiled(), native.status()
    import detectors.queue

    assert Path(detectors.queue.__file__ or "").suffix == ".so"


@pytest.mark.usefixtures("built")
def test_running_a_build_needs_no_compiler(tmp_path: Path) -> None:
    # As in the Docker image, whose runtime stage has neither mypy nor a C compiler.
    code = (
        "import sys; sys.modules.update(mypy=None, mypyc=None, setuptools=None)\n"
        "from tollmon import native; import detectors.queue, tollmon.pipeline\n"
        "print(native.is_compiled(), detectors.queue.__file__.endswith('.so'))"
    )
    env = {**os.environ, "TOLLMON_NATIVE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert done.stdout.split() == ["True", "True"]


def test_a_build_serves_only_the_source_it_was_built_from(tmp_path: Path) -> None:
    for package in native.PACKAGES:
        shutil.copytree(native.ROOT / package, tmp_path / package)
    before = native.source_digest(tmp_path)
    assert native.source_digest(tmp_path) == before
    # Any module counts, compiled or not: mypyc builds on what the others declare.
    with (tmp_path / "tollmon" / "events.py").open("a") as events:
        events.write("\n# an edit\n")
    assert native.source_digest(tmp_path) != before
    assert native.build_dir(tmp_path).name == native.source_digest(tmp_path)


def test_plain_python_is_what_runs_without_a_build_or_when_asked() -> None:
    env = {**os.environ, "TOLLMON_NATIVE": "0"}
    done = subprocess.run(
        [sys.executable, "tools/native.py", "status"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=native.ROOT,
    )
    assert done.stdout.strip() == "plain Python: TOLLMON_NATIVE=0"


def test_a_checkpoint_of_compiled_state_is_refused_by_plain_code_and_back() -> None:
    """Compiled and plain classes pickle differently: neither restores the other's."""
    env = {**os.environ, "TOLLMON_NATIVE": "0"}
    code = "from tollmon.checkpoint import code_fingerprint; print(code_fingerprint().hex())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    plain = bytes.fromhex(done.stdout.strip())
    assert (plain == code_fingerprint()) is not native.is_compiled()
