"""The dedup memory: the last `capacity` ids, forgotten oldest first, kept across a restore."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tollmon.dedup import RecentIds

ids = st.lists(st.sampled_from([f"e{n}" for n in range(40)]), max_size=300)
capacities = st.integers(min_value=1, max_value=25)


def reference(capacity: int, stream: list[str]) -> tuple[list[bool], list[str]]:
    """What each id should answer, and what is remembered at the end (oldest first)."""
    remembered: list[str] = []
    answers = []
    for event_id in stream:
        answers.append(event_id in remembered)
        if event_id not in remembered:
            remembered.append(event_id)
            del remembered[:-capacity]
    return answers, remembered


@given(capacities, ids)
def test_it_answers_like_a_bounded_first_in_first_out_memory(
    capacity: int, stream: list[str]
) -> None:
    recent = RecentIds(capacity)
    answers = [recent.seen_before(event_id) for event_id in stream]
    assert (answers, recent.ids()) == reference(capacity, stream)
    assert len(recent) == len(recent.ids()) <= capacity


@given(capacities, ids, ids)
def test_a_restored_memory_goes_on_as_the_original_would(
    capacity: int, before: list[str], after: list[str]
) -> None:
    original = RecentIds(capacity)
    for event_id in before:
        original.seen_before(event_id)
    restored = RecentIds.of(capacity, original.ids())
    assert [restored.seen_before(e) for e in after] == [original.seen_before(e) for e in after]
    assert restored.ids() == original.ids()


def test_a_restore_into_a_smaller_memory_keeps_the_newest_ids() -> None:
    restored = RecentIds.of(2, ["a", "b", "c"])
    assert restored.ids() == ["b", "c"]
    assert not restored.seen_before("a")
