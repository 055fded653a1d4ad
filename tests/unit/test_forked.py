"""A snapshot encoded in a forked child: the state of the moment of the fork, whole."""

from __future__ import annotations

import asyncio
import gc
import os

import pytest

from streams.forked import CHILD_NICENESS, SnapshotError, encode_in_child


def test_the_child_encodes_the_state_as_it_was_at_the_fork() -> None:
    state = {"plazas": list(range(1_000))}

    async def scenario() -> bytes:
        pending = asyncio.ensure_future(encode_in_child(lambda: repr(state).encode()))
        await asyncio.sleep(0)  # the fork has happened; the parent goes on changing its state
        state["plazas"].append(-1)
        return await pending

    assert asyncio.run(scenario()) == repr({"plazas": list(range(1_000))}).encode()


def test_a_snapshot_larger_than_a_pipe_buffer_arrives_whole() -> None:
    big = bytes(range(256)) * 40_000  # 10 MB
    assert asyncio.run(encode_in_child(lambda: big)) == big


def test_a_failure_in_the_child_is_raised_in_the_parent() -> None:
    def broken() -> bytes:
        raise ValueError("unpicklable state")

    with pytest.raises(SnapshotError, match="unpicklable state"):
        asyncio.run(encode_in_child(broken))


def test_the_child_runs_below_the_worker_for_the_cpu() -> None:
    ours = os.nice(0)
    theirs = int(asyncio.run(encode_in_child(lambda: str(os.nice(0)).encode())))
    assert theirs == min(19, ours + CHILD_NICENESS)


def test_the_child_does_not_collect_garbage_while_it_encodes() -> None:
    assert asyncio.run(encode_in_child(lambda: str(gc.isenabled()).encode())) == b"False"
    assert gc.isenabled()
