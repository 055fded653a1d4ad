"""A snapshot encoded in a forked child: the state of the moment of the fork, whole."""

from __future__ import annotations

import asyncio

import pytest

from streams.forked import SnapshotError, encode_in_child


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
