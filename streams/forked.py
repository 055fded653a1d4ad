"""Encode a snapshot of this process's state in a forked child, off the event loop.

The scale-bias fit runs over every scale's recent pairs at once, for seconds at network
scale, during which the event loop that serves every plaza would stand still. A forked
child sees the memory of the moment of the fork (copy on write), so it can work on a
consistent snapshot while the parent goes on taking input; the parent pays for the fork
and for copying the pages it writes while the child lives. (Detector checkpoints were
encoded this way until they were cut into slices per plaza: streams/checkpoint.py.)

The child touches nothing but the objects it encodes and a pipe, and leaves with
`os._exit`: no locks, logging, event loop or Kafka client of the parent are used in it.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable

_OK, _FAILED = b"+", b"-"
# How much lower the child's CPU priority is than the worker's (nice(2) increment).
CHILD_NICENESS = 10


class SnapshotError(Exception):
    """The child could not encode the snapshot."""


async def encode_in_child(encode: Callable[[], bytes]) -> bytes:
    """`encode()` as run on a copy of this process taken now; its result in this one."""
    if not hasattr(os, "fork"):
        return encode()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit, which coverage never sees
        os.close(read_fd)
        try:
            # Background work: the parent, serving every plaza, comes first for the CPU;
            # and the child frees nothing worth a collection before it exits.
            os.nice(CHILD_NICENESS)
            gc.disable()
            outcome = _OK + encode()
        except BaseException as exc:
            outcome = _FAILED + repr(exc).encode()
        try:
            _write_all(write_fd, outcome)
        finally:
            os._exit(0)
    os.close(write_fd)
    outcome = await asyncio.to_thread(_collect, read_fd, pid)
    if not outcome.startswith(_OK):
        raise SnapshotError(outcome[1:].decode(errors="replace") or "the child died")
    return outcome[1:]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _collect(fd: int, pid: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return b"".join(chunks)
