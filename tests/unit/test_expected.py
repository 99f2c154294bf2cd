"""Expected: the ledger's state a scrub compares copies with, brought up to date by changes."""

from carma.healing.expected import Expected
from carma.projections.ledger import ScanChanges, ScanRows


def row(n, status="healthy", digest="d"):
    """A scan row as the ledger selects it: (uuid hex, faiss id, gone, fingerprint, digest)."""
    gone = status in ("deleted", "forgotten")
    return (hex_of(n), 100 + n, gone, n * 7, "" if gone else digest * 64)


def hex_of(n):
    """Fragment n's uuid hex: in folder n (n < 256), else in folder 01."""
    return f"{n:02x}" + "0" * 30 if n < 256 else f"01{n:04x}" + "0" * 26


def changes(tick, rows, generation="g1"):
    return ScanChanges(tick, 0, ScanRows.of(rows), generation)


def entry(state, n):
    """(gone, digest's first byte) of fragment n in its folder."""
    folder = state.folders[hex_of(n)[:2]]
    at = folder.hex_list().index(hex_of(n))
    return bool(folder.gone[at]), int(folder.digests[at][0])


def test_changes_land_in_their_folders_and_the_state_before_stays_whole():
    first = Expected().updated(changes(3, [row(1), row(2), row(0x31)]))
    assert set(first.folders) == {"01", "02", "31"} and first.tick == 3 and first.count == 3
    second = first.updated(changes(5, [row(1, status="deleted"), row(2, digest="e")]))
    assert entry(second, 1) == (True, 0) and entry(second, 2) == (False, 0xEE)
    assert second.count == 3
    # The state before is untouched (a scrub may still read it); unchanged folders are
    # shared, so a folder's identity says whether its rows changed.
    assert entry(first, 1) == (False, 0xDD) and entry(first, 2) == (False, 0xDD)
    assert second.folders["31"] is first.folders["31"]
    assert second.folders["02"] is not first.folders["02"]
    assert len(second.folders["01"]) == 1


def test_a_fragment_brought_back_leaves_the_deleted_and_its_index_arrays_follow():
    deleted = Expected().updated(changes(1, [row(1, status="deleted"), row(2)]))
    assert deleted.index.live.tolist() == [False, True]
    back = deleted.updated(changes(2, [row(1, status="lost"), row(3)]))
    assert entry(back, 1) == (False, 0xDD)
    assert back.count == 3
    assert back.index.live.tolist() == [True, True, True]
    assert back.index.ids.tolist() == [101, 102, 103]
    assert back.index.fingerprints.tolist() == [7, 14, 21]


def test_no_change_keeps_the_same_state_and_its_sorted_arrays():
    state = Expected().updated(changes(4, [row(2), row(1)]))
    arrays = state.index
    assert state.updated(changes(4, [])) is state and state.index is arrays
    assert arrays.ids.tolist() == [101, 102]  # sorted by FAISS id
    assert [h.decode() for h in arrays.hexes.tolist()] == [hex_of(1), hex_of(2)]


def test_changes_of_another_clock_or_from_before_its_tick_do_not_follow():
    state = Expected().updated(changes(9, [row(1)]))
    assert Expected().follows(changes(9, [], "g2"))  # nothing read yet: any clock
    assert state.follows(changes(9, [])) and state.follows(changes(12, [row(2)]))
    assert not state.follows(changes(12, [row(2)], generation="g2"))
    assert not state.follows(changes(4, []))


def test_a_folder_of_many_changes_keeps_one_row_per_fragment():
    state = Expected().updated(changes(1, [row(n) for n in range(0x100, 0x140)]))
    again = state.updated(changes(2, [row(n, digest="a") for n in range(0x100, 0x140, 2)]))
    folder = again.folders["01"]
    assert len(folder) == 0x40 and again.count == 0x40
    assert sorted(folder.hex_list()) == sorted(hex_of(n) for n in range(0x100, 0x140))
    assert [entry(again, n)[1] for n in (0x100, 0x101)] == [0xAA, 0xDD]


def test_a_digest_the_ledger_holds_damaged_reads_as_none_and_stops_nothing():
    rows = ScanRows.of([(hex_of(1), 101, False, 7, "zz" * 32), (hex_of(2), 102, False, 14, "ab")])
    rows = ScanRows.joined([rows, ScanRows.of([row(3)])])
    assert rows.digests[:2].tolist() == [[0] * 32, [0] * 32]  # no file's digest matches
    assert rows.digests[2].tolist() == [0xDD] * 32 and rows.hex_list()[2] == hex_of(3)
