"""Detector state as bytes, and which input offsets a saved state already covers.

A checkpoint is read back from a Kafka topic, so loading one must not run arbitrary
code: the unpickler admits only the project's state classes and a short list of
standard containers, and refuses anything else.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from tollmon import native
from tollmon.errors import TollmonError

# Bumped whenever a checkpoint changes shape: an older one is then ignored.
FORMAT_VERSION = 2

# The packages whose classes make up detector state. Only classes are admitted, never
# functions, so a crafted checkpoint can at most build state objects.
_STATE_PACKAGES = ("detectors.", "tollmon.pipeline", "tollmon.events")
_STANDARD: dict[str, frozenset[str]] = {
    "builtins": frozenset({"set", "frozenset", "bytearray", "complex", "slice"}),
    "collections": frozenset({"deque", "OrderedDict", "defaultdict"}),
    "array": frozenset({"array", "_array_reconstructor"}),
    "itertools": frozenset({"count"}),
    # Keyword-only msgspec Structs pickle as rebuild(cls, kwargs); cls passes this filter too.
    "msgspec._utils": frozenset({"rebuild"}),
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.dtypes": frozenset({"Float64DType", "Int64DType", "BoolDType"}),
}

T = TypeVar("T")


class CheckpointError(TollmonError):
    """A checkpoint that cannot be loaded: foreign content, corrupt or from another version."""


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _STANDARD.get(module, ()):
            return super().find_class(module, name)
        if module.startswith(_STATE_PACKAGES) and "." not in name:
            found = getattr(importlib.import_module(module), name, None)
            if isinstance(found, type) and not issubclass(found, Enum | BaseException):
                return found
        raise CheckpointError(f"a checkpoint may not contain {module}.{name}")


@cache
def code_fingerprint() -> bytes:
    """A digest of the source that defines detector state (8 bytes).

    Pickled state only fits the classes that made it: a checkpoint saved by other
    detector code (an upgrade, a rollback) is refused as a whole rather than restored
    into objects that lack or misread attributes. Compiled and plain classes pickle
    their state differently, so the same source counts as other code once compiled.
    """
    root = Path(__file__).resolve().parent.parent
    sources = [
        *sorted((root / "detectors").glob("*.py")),
        root / "tollmon" / "pipeline.py",
        root / "tollmon" / "events.py",
    ]
    digest = hashlib.sha256(b"compiled" if native.is_compiled() else b"plain")
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.digest()[:8]


def dumps(state: object) -> bytes:
    """Plain detector objects as compressed bytes (level 1: snapshots are frequent)."""
    pickled = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return code_fingerprint() + zlib.compress(pickled, 1)


def loads(data: bytes, value_type: type[T]) -> dict[str, T]:
    """The `dumps` of a dict of `value_type` by key; raises CheckpointError on anything else."""
    fingerprint, blob = data[:8], data[8:]
    if fingerprint != code_fingerprint():
        raise CheckpointError("saved by other detector code (an upgrade or a rollback)")
    try:
        state = _StateUnpickler(io.BytesIO(zlib.decompress(blob))).load()
    except CheckpointError:
        raise
    except Exception as exc:  # a corrupt blob can fail in any of pickle's many ways
        raise CheckpointError(f"unreadable checkpoint: {exc!r}") from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, value_type) for k, v in state.items()
    ):
        raise CheckpointError(f"a checkpoint must map names to {value_type.__name__}")
    return state


class PlazaCheckpoint(msgspec.Struct, array_like=True, frozen=True):
    """One plaza's detector state, and the input it had taken in when it was saved.

    `offsets` is the last offset processed per input topic at that moment: a save round
    encodes its plazas a few at a time between batches, so each has offsets of its own.
    """

    plaza_id: str
    offsets: dict[str, int]
    state: bytes  # Pipeline.snapshot of this plaza alone


class PartitionCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """What one input partition number's detectors had taken in, and their state then.

    `offsets` is the last offset processed per input topic when the save round began
    (a topic missing from it had nothing processed yet): the dedup ids are those of that
    moment, and a restore reads back from just after it. Each plaza's own offsets are at
    or after these; what they cover is replayed through the dedup memory only.
    """

    version: int
    offsets: dict[str, int]
    plazas: list[PlazaCheckpoint]
    dedup_ids: list[str]  # the partition's remembered event ids, oldest first


class CheckpointPart(msgspec.Struct, array_like=True, frozen=True):
    """One changelog record of a checkpoint: a checkpoint of any size is cut into parts
    that each fit a Kafka message, written one after another, and read back whole.

    `round_id` tells the parts of one save from those of another (a save cut short by a
    crash leaves some parts of its own behind the newest complete one).
    """

    version: int
    round_id: int
    index: int
    count: int
    body: bytes


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(PartitionCheckpoint).decode
_decode_part = msgspec.msgpack.Decoder(CheckpointPart).decode


def encode_checkpoint(checkpoint: PartitionCheckpoint) -> bytes:
    return _encode(checkpoint)


def checkpoint_parts(
    checkpoint: PartitionCheckpoint, round_id: int, part_bytes: int
) -> list[bytes]:
    """`checkpoint` as changelog records of at most `part_bytes` of body each, in order."""
    return body_parts(encode_checkpoint(checkpoint), round_id, part_bytes)


def body_parts(whole: bytes, round_id: int, part_bytes: int) -> list[bytes]:
    """Any saved state's bytes as changelog records of at most `part_bytes` of body each."""
    bodies = [whole[start : start + part_bytes] for start in range(0, len(whole), part_bytes)]
    return [
        _encode(CheckpointPart(FORMAT_VERSION, round_id, index, len(bodies), body))
        for index, body in enumerate(bodies)
    ]


def decode_part(data: bytes) -> CheckpointPart:
    """Raises CheckpointError for bytes that are not a checkpoint part of this version."""
    part = versioned(_decode_part, data, "checkpoint part")
    if not 0 <= part.index < part.count:
        raise CheckpointError(f"checkpoint part {part.index} of {part.count}")
    return part


def newest_complete(records: list[bytes]) -> PartitionCheckpoint | None:
    """The newest checkpoint all of whose parts are among `records` (changelog values in
    offset order) and that decodes, or None. Records that are no parts of this version
    are passed over, and so is a complete set that does not decode (an older one is
    taken instead); if no complete set decodes, the newest's CheckpointError is raised."""
    return newest_complete_as(records, decode_checkpoint)


def newest_complete_as(records: list[bytes], decode: Callable[[bytes], T]) -> T | None:
    """`newest_complete` for saved state of any kind: `decode` raises CheckpointError for
    bytes that are not one of this version."""
    rounds: dict[int, dict[int, CheckpointPart]] = {}
    for record in reversed(records):
        try:
            part = decode_part(record)
        except CheckpointError:
            continue
        rounds.setdefault(part.round_id, {}).setdefault(part.index, part)
    failed: CheckpointError | None = None
    for parts in rounds.values():  # newest first: dicts keep their insertion order
        count = next(iter(parts.values())).count
        if not all(index in parts for index in range(count)):
            continue
        try:
            return decode(b"".join(parts[index].body for index in range(count)))
        except CheckpointError as exc:
            failed = failed or exc
    if failed is not None:
        raise failed
    return None


def decode_checkpoint(data: bytes) -> PartitionCheckpoint:
    """Raises CheckpointError for bytes that are not a checkpoint of this version."""
    return versioned(_decode, data, "checkpoint")


class _Versioned(Protocol):
    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=_Versioned)


def versioned(decode: Callable[[bytes], V], data: bytes, what: str) -> V:
    """`decode(data)`, or CheckpointError if it fails or is not of this FORMAT_VERSION."""
    try:
        value = decode(data)
    except msgspec.DecodeError as exc:
        raise CheckpointError(f"not a {what}: {exc}") from exc
    if value.version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint version {value.version}, not {FORMAT_VERSION}")
    return value


@dataclass(frozen=True)
class CheckpointPolicy:
    """How often a partition's state is saved: every `every_s` or every `every_events`
    events, whichever comes first, as far as `max_share` allows.

    Saves are encoded on the event loop, a few plazas between two input batches, at
    most `max_share` of the processing time (and `max_slice_s` between two batches): a
    worker with thousands of plazas spreads its rounds out rather than falling behind
    its input, and then saves less often than asked.
    """

    every_s: float = 30.0
    every_events: int = 50_000
    max_share: float = 0.05
    max_slice_s: float = 0.05


@dataclass
class PartitionProgress:
    """Which offsets of one input partition number the detector state has taken in.

    After a restore, anything at or before the checkpoint's offsets is a re-delivery and
    is skipped; anything after them that Faust does not deliver (its commit ran ahead
    of the checkpoint, or it skipped events around a rebalance) has to be read back.
    Until the input passes the offsets each restored plaza was saved at (`coverage`),
    an event of such a plaza goes to the dedup memory but not to its detectors again.
    """

    next_offsets: dict[str, int] = field(default_factory=dict)
    events_since_save: int = 0
    saved_at_s: float = 0.0
    # next_offsets as they stood when the outputs of everything before were last flushed
    flushed_offsets: dict[str, int] = field(default_factory=dict)
    # Per topic, per restored plaza, the last offset its restored state already holds.
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    covered_through: dict[str, int] = field(default_factory=dict)  # the newest of those

    @classmethod
    def after(cls, offsets: dict[str, int], now_s: float) -> PartitionProgress:
        return cls({topic: offset + 1 for topic, offset in offsets.items()}, 0, now_s)

    @classmethod
    def restored(
        cls, checkpoint: PartitionCheckpoint, plaza_ids: Iterable[str], now_s: float
    ) -> PartitionProgress:
        """Progress from `checkpoint`, of which the plazas `plaza_ids` were restored."""
        progress = cls.after(checkpoint.offsets, now_s)
        restored = set(plaza_ids)
        for plaza in checkpoint.plazas:
            if plaza.plaza_id not in restored:
                continue
            for topic, offset in plaza.offsets.items():
                if offset >= progress.next_offsets.get(topic, 0):
                    progress.coverage.setdefault(topic, {})[plaza.plaza_id] = offset
        progress.covered_through = {t: max(c.values()) for t, c in progress.coverage.items()}
        return progress

    def is_redelivery(self, topic: str, offset: int) -> bool:
        return offset < self.next_offsets.get(topic, 0)

    def missing_before(self, topic: str, offset: int) -> int | None:
        """The first offset not yet taken in, if it is before `offset`; else None."""
        expected = self.next_offsets.get(topic, 0)
        return expected if expected < offset else None

    def covered_plazas(self, topic: str) -> Mapping[str, int]:
        """Per plaza, the last offset of `topic` its restored state already holds."""
        return self.coverage.get(topic, _NONE_COVERED)

    def taken(self, topic: str, offset: int) -> None:
        self.next_offsets[topic] = max(self.next_offsets.get(topic, 0), offset + 1)
        self.events_since_save += 1
        if self.coverage and offset >= self.covered_through.get(topic, offset):
            self.coverage.pop(topic, None)

    def flushed(self) -> None:
        """The outputs of everything taken in so far are with the producer."""
        self.flushed_offsets = dict(self.next_offsets)

    def covered(self) -> dict[str, int]:
        """The last offset taken in per topic, as a checkpoint records it."""
        return {topic: offset - 1 for topic, offset in self.next_offsets.items() if offset > 0}

    def is_due(self, now_s: float, policy: CheckpointPolicy) -> bool:
        if not self.events_since_save:
            return False
        elapsed = now_s - self.saved_at_s
        return self.events_since_save >= policy.every_events or elapsed >= policy.every_s

    def saved(self, now_s: float) -> None:
        self.events_since_save = 0
        self.saved_at_s = now_s


_NONE_COVERED: Mapping[str, int] = {}
