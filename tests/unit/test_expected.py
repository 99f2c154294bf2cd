"""Expected: the ledger's state a scrub compares copies with, brought up to date by changes."""

from carma.healing.expected import Expected
from carma.projections.ledger import ScanChanges


def row(n, status="healthy", digest="d"):
    return (f"{n:02x}" + "0" * 30, f"key-{n}", 100 + n, status, n * 7, digest)


def changes(tick, rows, generation="g1"):
    return ScanChanges(tick, 0, rows, generation)


def name(n):
    return row(n)[0] + ".json"


def test_changes_land_in_their_folders_and_the_state_before_stays_whole():
    first = Expected().updated(changes(3, [row(1), row(2), row(0x31)]))
    assert set(first.live) == {"01", "02", "31"} and first.tick == 3 and first.count == 3
    second = first.updated(changes(5, [row(1, status="deleted"), row(2, digest="e")]))
    assert name(1) not in second.live["01"] and second.gone["01"][name(1)][3] == "deleted"
    assert second.live["02"][name(2)][5] == "e" and second.count == 3
    # The state before is untouched (a scrub may still read it); unchanged folders are
    # shared, so a folder's identity says whether its rows changed.
    assert first.live["01"][name(1)][3] == "healthy" and first.live["02"][name(2)][5] == "d"
    assert second.live["31"] is first.live["31"]
    assert second.live["02"] is not first.live["02"]


def test_a_fragment_brought_back_leaves_the_deleted_and_its_index_arrays_follow():
    deleted = Expected().updated(changes(1, [row(1, status="deleted"), row(2)]))
    assert deleted.index.live.tolist() == [False, True]
    back = deleted.updated(changes(2, [row(1, status="lost"), row(3)]))
    assert name(1) in back.live["01"] and name(1) not in back.gone["01"]
    assert back.count == 3
    assert back.index.live.tolist() == [True, True, True]
    assert back.index.ids.tolist() == [101, 102, 103]
    assert back.index.fingerprints.tolist() == [7, 14, 21]


def test_no_change_keeps_the_same_state_and_its_sorted_arrays():
    state = Expected().updated(changes(4, [row(2), row(1)]))
    arrays = state.index
    assert state.updated(changes(4, [])) is state and state.index is arrays
    assert arrays.ids.tolist() == [101, 102]  # sorted by FAISS id
    assert [r[0] for r in arrays.rows] == [row(1)[0], row(2)[0]]


def test_changes_of_another_clock_or_from_before_its_tick_do_not_follow():
    state = Expected().updated(changes(9, [row(1)]))
    assert Expected().follows(changes(9, [], "g2"))  # nothing read yet: any clock
    assert state.follows(changes(9, [])) and state.follows(changes(12, [row(2)]))
    assert not state.follows(changes(12, [row(2)], generation="g2"))
    assert not state.follows(changes(4, []))
