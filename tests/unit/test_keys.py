"""FragmentKeys: per-fragment keys in two copies, read one at a time or many at once."""

import sqlite3

from carma.home import Home
from carma.log.keys import FragmentKeys


def test_many_keys_at_once_are_the_keys_one_at_a_time_from_either_copy(tmp_path):
    keys = FragmentKeys(Home(tmp_path).key_copies("fragments.sqlite"))
    uuids = [f"fragment-{i}" for i in range(1_203)]  # more than one query's worth
    keys.create_many(uuids)
    keys.destroy(uuids[0])
    with sqlite3.connect(keys.paths[0]) as first:  # one copy lost a key: the other has it
        first.execute("DELETE FROM keys WHERE uuid = ?", [uuids[1]])
    held = keys.keys_for([*uuids, "never-made"])
    assert held == {u: keys.key_for(u) for u in [*uuids, "never-made"]}
    assert held[uuids[0]] is None and held["never-made"] is None
    assert held[uuids[1]] is not None and len(held[uuids[2]]) == 32
    keys.close()


def test_a_repair_of_two_damaged_copies_keeps_every_key_either_still_holds(tmp_path):
    """Each copy damaged at a different page: a scan of either stops at its damaged page, yet
    every key past it is sound. The repair must read them (chaos found keys lost from both)."""
    from carma.demo.chaos import flip_used_page

    keys = FragmentKeys(Home(tmp_path).key_copies("fragments.sqlite"))
    uuids = [f"fragment-{i}" for i in range(3_000)]
    keys.create_many(uuids)
    before = keys.keys_for(uuids)
    keys.close()
    flip_used_page(keys.paths[0], 1 / 3)
    flip_used_page(keys.paths[1], 2 / 3)
    keys = FragmentKeys(keys.paths)
    assert set(keys.check()) == {"keys", "keys-mirror"}
    keys.repair("keys", opens=lambda uuid, key: key == before[uuid], forgotten=lambda u: set())
    assert keys.check() == {}
    assert keys.keys_for(uuids) == before
    keys.close()


def test_the_copies_are_compared_by_uuid_whatever_their_rows_order(tmp_path):
    """A key that differs between the copies is damage, one a copy lacks is written back to
    it, a row that is no key (text SQLite's page checks pass) is its copy's damage; copies
    holding the same keys in another order are alike (the comparison's quick path, rows alike
    at the same rowid, must not decide by position)."""
    keys = FragmentKeys(Home(tmp_path).key_copies("fragments.sqlite"))
    uuids = [f"fragment-{i}" for i in range(500)]
    keys.create_many(uuids)
    before = keys.keys_for(uuids)
    assert keys.check() == {} and keys.restore_copies() == 0
    with sqlite3.connect(keys.paths[1]) as mirror:  # the same rows, in reverse order
        rows = mirror.execute("SELECT uuid, key FROM keys ORDER BY rowid DESC").fetchall()
        mirror.execute("DELETE FROM keys")
        mirror.executemany("INSERT INTO keys VALUES (?, ?)", rows)
    assert keys.check() == {} and keys.restore_copies() == 0
    with sqlite3.connect(keys.paths[1]) as mirror:
        mirror.execute("UPDATE keys SET key = zeroblob(32) WHERE uuid = ?", [uuids[5]])
        mirror.execute("DELETE FROM keys WHERE uuid = ?", [uuids[7]])
    assert keys.check() == {"keys": ("corrupt", "1 key(s) differ between the copies")}
    assert keys.restore_copies() == 1 and keys.restore_copies() == 0
    with sqlite3.connect(keys.paths[1]) as mirror:
        assert mirror.execute("SELECT key FROM keys WHERE uuid = ?", [uuids[7]]).fetchone() == (
            before[uuids[7]],
        )
    with sqlite3.connect(keys.paths[0]) as first:  # a uuid's bytes damaged in the key store
        first.execute(
            "UPDATE keys SET uuid = CAST(X'FF' || substr(CAST(uuid AS BLOB), 2) AS TEXT)"
            " WHERE uuid = ?",
            [uuids[9]],
        )
    found = keys.check()
    assert found["keys"] == ("corrupt", "1 row(s) not a key")
    assert keys.restore_copies() == 1  # the mirror's key of that fragment, never the damaged row
    with sqlite3.connect(keys.paths[1]) as mirror:
        assert mirror.execute("SELECT count(*) FROM keys").fetchone() == (500,)
    keys.close()


def test_a_key_its_index_hides_in_both_copies_is_read_off_a_table_that_holds_it(tmp_path):
    """A damaged page of the uuid index in each copy hides some keys from every lookup,
    while one copy's table still holds them: a read must find them there, not report the
    fragment forgotten until the repair (chaos saw such fragments missing from searches)."""
    keys = FragmentKeys(Home(tmp_path).key_copies("fragments.sqlite"))
    uuids = [f"fragment-{i}" for i in range(3_000)]
    keys.create_many(uuids)
    before = keys.keys_for(uuids)
    keys.close()
    for path in keys.paths:  # every index page of both copies: no lookup succeeds
        conn = sqlite3.connect(path)
        pages = [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'sqlite_autoindex_keys_1'"
            )
        ]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
        data = bytearray(path.read_bytes())
        for page in pages:
            for i in range((page - 1) * size, (page - 1) * size + 16):
                data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    keys = FragmentKeys(keys.paths)
    assert keys.keys_for(uuids[:700]) == {u: before[u] for u in uuids[:700]}
    assert keys.key_for(uuids[2_500]) == before[uuids[2_500]]
    assert keys.key_candidates(uuids[5]) == [before[uuids[5]]]
    assert keys.keys_for(["never-written"]) == {"never-written": None}
    keys.close()
