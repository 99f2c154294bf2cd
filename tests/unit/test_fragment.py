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


def test_a_deleted_fragment_cannot_be_revised_and_deleting_twice_is_no_change():
    f = written()
    assert f.delete("gone") is True
    assert f.delete("again") is False
    with pytest.raises(FragmentGone):
        f.revise("new", {}, "h3", b"\0" * 8)
    assert kinds(f) == ["FragmentWritten", "FragmentDeleted"]
    assert f.deleted_reason == "gone"
