"""Health and recent history of some namespaces alone: what a key scoped to them may see
(carma serve), and nothing of the others'."""

import pytest

from carma import FragmentEvent, InvalidInput


def _store(mem):
    people = mem.add_many(
        [{"text": f"person {i} likes tea number {i}", "namespace": "people"} for i in range(6)]
    ).ids
    notes = mem.add_many(
        [{"text": f"note {i}: the tide turns at pier {i}", "namespace": "notes"} for i in range(4)]
    ).ids
    return people, notes


def test_a_namespace_health_counts_its_own_fragments_and_findings_only(mem):
    people, notes = _store(mem)
    for key in notes[:3]:  # damage in notes only
        mem.cache.path_of(mem.ledger.row(key)["uuid"]).unlink()
    mem.scrub()
    whole, alone, other = mem.health(), mem.health("people"), mem.health(["notes"])
    assert (whole["live"], alone["live"], other["live"]) == (10, 6, 4)
    assert alone["by_status"]["degraded"] == 0 and alone["by_fault"] == {}
    assert alone["score"] == 1.0
    assert other["by_status"]["degraded"] == 3 and other["by_fault"] == {"cache/missing": 3}
    assert other["score"] == pytest.approx(1 / 4)
    assert alone["last_cycle"] is None and whole["by_status"]["degraded"] == 3
    mem.heal()
    assert mem.health("notes")["by_method"] == {"exact-log": 3}
    assert mem.health("people")["by_method"] == {}
    assert mem.health(["people", "notes"])["live"] == 10
    assert mem.health([])["live"] == 0


def test_the_fidelity_distribution_counts_every_live_fragment(mem):
    _store(mem)
    spread = mem.health("people")["distribution"]["fidelity"]
    assert spread["count"] == 6 and spread["sum"] == 6.0
    assert spread["bins"][-1] == {"le": 1.0, "count": 6}
    assert sum(b["count"] for b in spread["bins"]) == 6
    assert mem.health()["distribution"]["fidelity"]["count"] == 10


def test_recent_history_is_newest_first_and_scoped(mem):
    people, notes = _store(mem)
    mem.delete(notes[0], reason="done")
    latest = mem.recent_history(3)
    assert all(isinstance(e, FragmentEvent) for e in latest)
    assert [e.kind for e in latest][0] == "deleted" and latest[0].id == notes[0]
    positions = [e.position for e in mem.recent_history(100)]
    assert positions == sorted(positions, reverse=True) and len(positions) == 11
    mine = mem.recent_history(100, namespace="people")
    assert {e.id for e in mine} == set(people) and {e.namespace for e in mine} == {"people"}
    older = mem.recent_history(100, before=positions[2])
    assert [e.position for e in older] == positions[3:]


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.health("no spaces allowed"),
        lambda m: m.health(7),
        lambda m: m.recent_history(0),
        lambda m: m.recent_history(5, before=-1),
        lambda m: m.recent_history(5, namespace=["ok", ""]),
    ],
)
def test_bad_scopes_are_refused(mem, call):
    with pytest.raises(InvalidInput):
        call(mem)
