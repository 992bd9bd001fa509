"""The Create panel's preview debouncer: which change of a browser tab gets its preview."""

from __future__ import annotations

import asyncio

from studio.ui.live_preview import Debouncer
from studio.ui.target_state import TargetFaces


async def test_the_newest_change_of_a_tab_wins_and_other_tabs_are_apart():
    debouncer = Debouncer(seconds=0.05)
    first = asyncio.create_task(debouncer.settle("tab"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(debouncer.settle("tab"))
    other = asyncio.create_task(debouncer.settle("other tab"))
    assert await first is None
    assert await second is not None
    assert await other is not None


async def test_a_change_from_older_face_choices_never_replaces_a_newer_one():
    """Two quick face assignments each chain a preview; the previews can arrive in
    either order, and the one made from the older choices must give way."""
    older = TargetFaces()
    newer = older.changed(assigned={1: 0, 4: 0})
    assert newer.revision > older.revision and newer.assigned != older.assigned
    debouncer = Debouncer(seconds=0.05)
    from_newer = asyncio.create_task(debouncer.settle("tab", newer.revision))
    await asyncio.sleep(0.01)
    from_older = asyncio.create_task(debouncer.settle("tab", older.revision))
    assert await from_older is None
    assert await from_newer is not None
    # A new upload (a fresh state) is newer than any choice before it.
    assert await debouncer.settle("tab", TargetFaces().revision) is not None


def test_the_remembered_tabs_are_bounded():
    debouncer = Debouncer(seconds=0.0, tabs=3)
    tickets = {tab: debouncer.ticket(tab) for tab in ("a", "b", "c", "d")}
    assert not debouncer.current("a", tickets["a"])  # forgotten, the oldest
    assert all(debouncer.current(tab, tickets[tab]) for tab in ("b", "c", "d"))
