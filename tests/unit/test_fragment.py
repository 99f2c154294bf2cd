import pytest
from carma.domain import Fragment, FragmentGone, fragment_uuid


def written(text="first", metadata=None):
    return Fragment(
        key="k",
        namespace="default",
        text=text,
        metadata=metadata or {},
        content_hash="h",
        embedding=b"\0" * 8,
        model={"name": "m", "dimension": 2},
    )


def kinds(fragment):
    return [type(e).__name__ for e in fragment.collect_events()]


def test_the_id_derives_from_the_callers_key():
    assert written().id == fragment_uuid("k")
    assert fragment_uuid("k") != fragment_uuid("k2")


def test_revising_to_the_same_content_records_nothing():
    f = written()
    assert f.revise("first", {}, "h", b"\0" * 8) is False
    assert f.revise("second", {}, "h2", b"\1" * 8) is True
    assert f.revise("second", {"a": 1}, "h2", b"\1" * 8) is True
    assert kinds(f) == ["FragmentWritten", "FragmentRevised", "FragmentRevised"]
    assert (f.text, f.metadata, f.version) == ("second", {"a": 1}, 3)
    assert f.content_version == 3


def test_a_deleted_fragment_cannot_be_revised_and_deleting_twice_is_no_change():
    f = written()
    assert f.delete("gone") is True
    assert f.delete("again") is False
    with pytest.raises(FragmentGone):
        f.revise("new", {}, "h3", b"\0" * 8)
    assert kinds(f) == ["FragmentWritten", "FragmentDeleted"]
    assert f.deleted_reason == "gone"


def test_findings_are_recorded_once_and_repairs_must_be_honest():
    f = written()
    f.collect_events()
    assert f.mark_lost("cache", "missing", None) is True
    assert f.mark_lost("cache", "corrupt", None) is False  # already open: recorded once
    assert f.mark_lost("index", "missing", None) is True
    with pytest.raises(ValueError, match="exact repair"):
        f.reconstruct("cache", "exact-log", 0.9, "h", [], None)
    with pytest.raises(ValueError, match="exact repair"):
        f.reconstruct("cache", "exact-log", 1.0, "other-hash", [], None)
    f.reconstruct("cache", "exact-log", 1.0, "h", [], None)
    with pytest.raises(ValueError, match="no open fault"):
        f.reconstruct("cache", "exact-log", 1.0, "h", [], None)
    assert f.faults == {"index": "missing"}
    assert f.content_version == 1  # findings and repairs do not change the content
    assert kinds(f) == ["FragmentLost", "FragmentLost", "FragmentReconstructed"]


def test_a_deleted_fragment_only_has_extra_copies_to_find():
    f = written()
    f.delete("gone")
    assert f.mark_lost("cache", "missing", None) is False
    assert f.mark_lost("cache", "extra", None) is True


HASH_OF_ORIGINAL = "e0f01a9f4d8c1d0c7f3eb1b1f4e3f4e84d0e3d2b0e0ba1b6c71c8e2a7d7a8b4e"


def damaged():
    """A fragment whose FragmentWritten is unreadable, as replay sees it."""
    return Fragment.past_unreadable(
        None, fragment_uuid("k"), 1, "domain.fragment:Fragment.FragmentWritten"
    )


def test_an_unreadable_first_event_leaves_a_fragment_that_knows_nothing_of_its_body():
    f = damaged()
    assert (f.key, f.namespace, f.text, f.embedding, f.content_hash) == (None,) * 5
    assert f.unreadable == [1] and f.version == 1 and not f.body_known
    recorded = {
        "key": "k",
        "namespace": "default",
        "content_hash": HASH_OF_ORIGINAL,
        "written_at": "then",
        "text": "never taken from a record",
    }
    assert f.mark_unreadable([1], recorded, None) is True
    assert f.mark_unreadable([1], recorded, None) is False  # recorded once
    assert (f.key, f.namespace, f.content_hash, f.text) == ("k", "default", HASH_OF_ORIGINAL, None)
    assert f.faults == {"log-body": "corrupt"}


def test_restoring_a_body_is_honest_and_fidelity_never_goes_down():
    from carma.domain import content_hash

    f = damaged()
    original = "the original text"
    f.mark_unreadable(
        [1], {"key": "k", "namespace": "default", "content_hash": content_hash(original)}, None
    )
    with pytest.raises(ValueError, match="exact repair"):
        f.restore_body("exact-copy", 1.0, "another text", {}, b"\0" * 8, [], None)
    assert f.next_refinement == 0  # a first rebuild
    assert f.restore_body("semantic-blend", 0.6, "a guess", {}, b"\0" * 8, ["n1"], None)
    assert (f.approximate, f.fidelity, f.faults, f.answered) == (True, 0.6, {}, [1])
    assert (f.refinements, f.next_refinement) == (0, 1)
    assert f.restore_body("semantic-blend", 0.5, "a worse guess", {}, b"\0" * 8, [], None) is False
    assert f.refinements == 0  # a refinement that does not improve is not one
    assert f.restore_body("semantic-blend", 0.7, "a better guess", {}, b"\0" * 8, [], None)
    assert f.refinements == 1  # what its expected recall is read at: see domain/calibration
    assert f.restore_body("exact-copy", 1.0, original, {}, b"\0" * 8, [], None)
    assert (f.text, f.approximate, f.fidelity, f.refinements) == (original, False, 1.0, 0)
    assert f.restore_body("exact-copy", 1.0, original, {}, b"\0" * 8, [], None) is False


def test_a_deleted_fragment_is_never_marked_unreadable_nor_restored():
    f = Fragment.past_unreadable(
        written(), fragment_uuid("k"), 2, "domain.fragment:Fragment.FragmentDeleted"
    )
    assert f.deleted
    assert f.mark_unreadable([2], {"key": "k"}, None) is False
    assert f.restore_body("exact-log", 1.0, "first", {}, b"\0" * 8, [], None) is False
