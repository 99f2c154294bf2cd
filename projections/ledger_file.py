"""The ledger's file as SQLite holds it: how each connection to it is set up, each fragments
row's checksum, and the check of every page and row, run in a process of its own.

This module is the standard library alone: it also runs as a script (`check_apart`), in a
child process that needs nothing else to start.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

# Every column of a fragments row but the scan clock's stamp, which the triggers set apart.
ROW_CHECKED = (
    "uuid",
    "id",
    "faiss_id",
    "namespace",
    "version",
    "status",
    "content_hash",
    "embedding_fingerprint",
    "cache_digest",
    "metadata",
    "fidelity",
    "expected_recall",
    "reconstructed_by",
    "refinements",
    "last_fault",
    "last_method",
    "written_at",
    "updated_at",
)


def row_check(*values: Any) -> int:
    """A row's checksum: 63 bits of blake2b over its values, each with its type."""
    digest = hashlib.blake2b(repr(values).encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


def row_checked(row: str) -> str:
    """row_check's arguments: the checked columns of `row` (NEW in a trigger, an alias)."""
    return ", ".join(f"{row}.{column}" for column in ROW_CHECKED)


def strict_text(raw: bytes) -> str:
    """A text column's value; damaged bytes (not UTF-8) are the file's damage, raised as
    SQLite's own (so that every reader treats them as a damaged ledger), never a bare
    UnicodeDecodeError."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise sqlite3.DatabaseError(f"the ledger holds damaged text ({exc.reason})") from None


def connect(path: Path | str, create: bool = True) -> sqlite3.Connection:
    """A connection to the ledger's file as every one of them is set up (`create`: a new
    file if there is none; else an error)."""
    where = path if create else f"file:{quote(str(path))}?mode=rw"
    conn = sqlite3.connect(
        where, isolation_level=None, check_same_thread=False, timeout=30, uri=not create
    )
    # Every connection that writes the ledger computes its rows' checksums (the triggers of
    # the ledger's row_checks call it), and every one that checks them.
    conn.create_function("row_check", len(ROW_CHECKED), row_check, deterministic=True)
    conn.text_factory = strict_text
    return conn


def check(path: Path | str, whole: bool = True) -> str | None:
    """Why the ledger's pages or rows are damaged, or None: SQLite's checks of every page
    (and, if `whole`, of every index against its table), and every fragments row against
    its checksum.

    `whole` is SQLite's `integrity_check`, a lookup in every index for every row; without
    it, `quick_check`, which reads each page once: 1.0 s against 19.7 s for a ledger of a
    million fragments. A row's values are covered by its checksum either way; only an
    index entry that disagrees with its row waits for the next whole check.

    On a connection of its own, in one read transaction: it checks a snapshot (WAL) while
    the ledger's own connection goes on writing."""
    pragma = "integrity_check" if whole else "quick_check"
    try:
        conn = connect(path, create=False)
        try:
            conn.execute("BEGIN")
            problems = [r[0] for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
            if problems != ["ok"]:
                return "; ".join(problems[:3])
            bad, rows, checks = conn.execute(
                f"SELECT sum(c.checksum IS NOT row_check({row_checked('f')})), count(*),"
                " (SELECT count(*) FROM row_checks) FROM fragments f"
                " LEFT JOIN row_checks c ON c.uuid = f.uuid"
            ).fetchone()
            if bad or rows != checks:
                return f"{bad or abs(rows - checks)} fragments row(s) fail their checksum"
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


def check_apart(path: Path | str, whole: bool = True) -> str | None:
    """`check`, in a child process: what a dream cycle runs beside its scan of the copies.

    The rows' checksums are a Python function SQLite calls once a row. On a thread beside the
    scan, those calls took the GIL from the scan between each of its reads: at 100,000
    fragments a deep scrub took 2.7 s with the check beside it, 1.8 s with SQLite's page check
    alone beside it or with no check at all. In a process of its own the check has a core and
    an interpreter of its own. Where no child process can be run (no interpreter to start, a
    child that died without its answer), the check is made here."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", __file__, str(path), "whole" if whole else "quick"],
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            return json.loads(done.stdout)["problem"]
    except (OSError, ValueError, KeyError):
        pass
    return check(path, whole)


if __name__ == "__main__":
    print(json.dumps({"problem": check(sys.argv[1], sys.argv[2] == "whole")}))
