import pytest

from domain import Fragment, FragmentGone, fragment_uuid


def written(text="first", metadata=None):
    return Fragment(key="k", namespace="default", text=text, metadata=metadata or {},
                    content_hash="h", embedding=b"\0" * 8, model={"name": "m", "dimension": 2})


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
