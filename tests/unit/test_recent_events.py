"""RecentEvents: the run of events a log has just recorded, and nothing it cannot vouch for."""

from carma.log.application import RecentEvents


class Written:
    pass


class Lost:
    pass


def events(first, kinds):
    return [(first + i, kind()) for i, kind in enumerate(kinds)]


def test_it_serves_what_follows_a_held_position_up_to_the_limit():
    recent = RecentEvents()
    recorded = events(10, [Written, Lost, Written, Lost])
    recent.add(recorded)
    assert recent.after(9, 10, ()) == (recorded, 13)
    assert recent.after(10, 2, ()) == (recorded[1:3], 12)
    assert recent.after(11, 10, (Lost,)) == ([recorded[3]], 13)
    assert recent.after(13, 10, ()) is None  # nothing held after the last
    assert recent.after(8, 10, ()) is None  # position 9 is not held: it must be read


def test_a_recording_that_does_not_follow_on_starts_the_run_afresh():
    recent = RecentEvents()
    recent.add(events(1, [Written, Written]))
    recent.add(events(3, [Lost]))
    assert recent.after(0, 10, ())[1] == 3
    recent.add(events(7, [Written]))  # positions 4..6 are another writer's
    assert recent.after(0, 10, ()) is None
    assert recent.after(6, 10, ())[1] == 7


def test_a_recording_with_a_gap_inside_is_not_held():
    recent = RecentEvents()
    recent.add(events(1, [Written]))
    recent.add([(2, Written()), (4, Lost())])
    assert recent.after(0, 10, ()) is None and recent.after(1, 10, ()) is None


def test_the_oldest_make_way_beyond_the_size():
    recent = RecentEvents(size=3)
    recent.add(events(1, [Written] * 5))
    assert recent.after(1, 10, ()) is None
    assert [p for p, _ in recent.after(2, 10, ())[0]] == [3, 4, 5]


def test_cleared_it_holds_nothing():
    recent = RecentEvents()
    recent.add(events(1, [Written]))
    recent.clear()
    assert recent.after(0, 10, ()) is None
    recent.add(events(2, [Lost]))
    assert recent.after(1, 10, ())[1] == 2
