import math

import pytest
from carma.domain import (
    KEY_MAX_CHARS,
    TEXT_MAX_CHARS,
    Draft,
    InvalidInput,
    validate_metadata,
)
from hypothesis import given
from hypothesis import strategies as st


def test_a_valid_draft_keeps_its_values():
    d = Draft.of("Some text.", {"a": 1, "b": [True, None, 2.5, "x"]}, "ns-1.x", "doc:7")
    assert (d.text, d.metadata, d.namespace, d.id) == (
        "Some text.",
        {"a": 1, "b": [True, None, 2.5, "x"]},
        "ns-1.x",
        "doc:7",
    )
    assert len(d.content_hash) == 64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": ""}, "text is empty"),
        ({"text": "  \n\t"}, "text is empty"),
        ({"text": 42}, "text must be a string"),
        ({"text": "x" * (TEXT_MAX_CHARS + 1)}, "the limit is"),
        ({"text": "a\x00b"}, "NUL"),
        ({"text": "bad \ud800 surrogate"}, "lone surrogate"),
        ({"text": "x", "metadata": {"a": {"nested": 1}}}, "flat lists"),
        ({"text": "x", "metadata": {"a": [[1]]}}, "flat lists"),
        ({"text": "x", "metadata": {"a": math.nan}}, "finite"),
        ({"text": "x", "metadata": {"a": math.inf}}, "finite"),
        ({"text": "x", "metadata": {"a": 2**64}}, "64-bit"),
        ({"text": "x", "metadata": {"bad key": 1}}, "metadata key"),
        ({"text": "x", "metadata": {'q"uote': 1}}, "metadata key"),
        ({"text": "x", "metadata": [1, 2]}, "JSON object"),
        ({"text": "x", "namespace": "../etc"}, "namespace"),
        ({"text": "x", "namespace": ""}, "namespace"),
        ({"text": "x", "namespace": "a" * 65}, "namespace"),
        ({"text": "x", "id": ""}, "id must have"),
        ({"text": "x", "id": "k" * (KEY_MAX_CHARS + 1)}, "id must have"),
        ({"text": "x", "id": "a\x00b"}, "control"),
        ({"text": "x", "id": " padded"}, "white space"),
        ({"text": "x", "id": 7}, "id must be a string"),
    ],
)
def test_bad_values_are_refused_with_one_clear_line(kwargs, message):
    with pytest.raises(InvalidInput) as caught:
        Draft.of(**kwargs)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_import_lines_with_unknown_fields_are_refused():
    with pytest.raises(InvalidInput, match="unknown field"):
        Draft.from_mapping({"text": "x", "colour": "red"})
    with pytest.raises(InvalidInput, match="missing field 'text'"):
        Draft.from_mapping({"metadata": {}})


def test_ids_that_look_like_paths_are_just_names():
    # Ids never become file names (files are named by uuid), so these are safe and accepted.
    for key in ("../../etc/passwd", "/abs/path", "C:\\x"):
        assert Draft.of("x", id=key).id == key


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8,
    )
)
def test_metadata_validation_never_crashes(value):
    try:
        checked = validate_metadata({"k": value})
    except InvalidInput as exc:
        assert str(exc)
    else:
        assert checked == {"k": value}


def test_read_whole_reads_a_file_of_any_size(tmp_path):
    """The scrub's read: one read for a small file, more for one past its read size."""
    from carma.healing.scrubber import READ_SIZE, read_whole

    for size in (0, 300, READ_SIZE, 3 * READ_SIZE + 17):
        path = tmp_path / f"f{size}"
        data = bytes(i % 251 for i in range(size))
        path.write_bytes(data)
        assert read_whole(str(path)) == data


@given(st.integers(1, 65), st.data())
def test_a_vector_fingerprint_changes_with_any_one_value(dimension, data):
    """One bit flipped anywhere in a vector changes its fingerprint (what lets a scrub
    compare the index with the log by fingerprints), odd dimensions included."""
    import numpy as np
    from carma.projections.index import vector_fingerprints

    vectors = np.random.default_rng(dimension).random((3, dimension), dtype=np.float32)
    before = vector_fingerprints(vectors)
    row = data.draw(st.integers(0, 2))
    column = data.draw(st.integers(0, dimension - 1))
    bit = data.draw(st.integers(0, 31))
    flipped = vectors.copy()
    flipped.view("<u4")[row, column] ^= np.uint32(1 << bit)
    after = vector_fingerprints(flipped)
    assert after[row] != before[row]
    assert all(after[i] == before[i] for i in range(3) if i != row)
