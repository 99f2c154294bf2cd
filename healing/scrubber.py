"""Scrubber: compares every copy with what the log says, and names each difference once."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import numpy as np
from carma.domain import content_hash, dashed_uuid
from carma.healing.expected import GONE, NO_FILES, Expected, Folder
from carma.projections import FragmentCache, HealthLedger, VectorIndex
from carma.projections.cache import fragment_stem, is_shard
from carma.projections.index import looked_up, vector_fingerprints
from carma.projections.ledger import canonical_json

# An index file may lack this many of the in-memory index's changed vectors before a scrub
# calls it stale (it is rewritten when a repair of it is recorded, on close and after a
# rebuild; see VectorIndex.check_file).
STALE_AFTER = 10_000
# The log's checksums, read again on a rolling schedule (a copy is scanned whole every scrub):
# a scrub reads every event appended since the last one, and an old slice of at least
# LOG_SLICE_MIN events or 1/LOG_PASSES of the log, so that every event is read again at least
# every LOG_PASSES scrubs. A deep scrub reads them all. Events are immutable, and every read
# of one (a replay, a rebuild) checks its checksum too: what the rolling slice bounds is how
# long damage to an event no one reads can go unnoticed.
LOG_PASSES = 8
LOG_SLICE_MIN = 1_024
LOG_VERIFIED, LOG_CURSOR = "scrub:log-verified", "scrub:log-cursor"  # ledger marks
# A cache folder's listing is reused only while the folder's mtime, ctime and inode are as
# they were, and only if it was listed at least this long after its last change by the file
# system's own clock (see Scrubber._fs_clock): a change made in the same tick as the one
# before could leave both timestamps as they were (FAT's tick is 2 s; most are far finer),
# and utime(2) can set an mtime back but never a ctime. A deep scrub lists every folder.
SETTLED_NS = 2_000_000_000
CLOCK_FILE = ".scrub-clock"  # in the cache's root, touched to read the file system's clock


@dataclass(frozen=True)
class Finding:
    uuid: str
    key: str
    copy: str  # "cache" | "index" | "log-body"
    fault: str  # "missing" | "unreadable" | "corrupt" | "stale" | "extra"
    versions: tuple[int, ...] = ()  # log-body: the fragment's events that fail their checksum
    recorded: dict[str, Any] | None = None  # log-body: what the ledger knows of the fragment


@dataclass(frozen=True)
class Listing:
    """A cache folder as a scrub listed it (see Scrubber._listing)."""

    stamp: tuple[int, int, int]  # the folder's mtime, ctime and inode when listed
    settled: bool  # listed long enough after its last change to be trusted until the next
    folder: Folder  # the rows it was compared with (the same object while they do not change)
    files: int
    gone_present: tuple[str, ...]  # uuid hex of deleted fragments with a file here
    strays: tuple[tuple[str | None, str], ...]  # (uuid hex if named as a fragment's, name)


@dataclass
class ScrubReport:
    findings: list[Finding] = field(default_factory=list)
    index_file: str | None = None  # the fault of the persisted index file, if any
    strays_removed: int = 0  # cache files and index ids that belong to no fragment at all
    checked: dict[str, int] = field(default_factory=dict)
    stray_files: list[tuple[str | None, str]] = field(default_factory=list)  # (uuid hex, path)
    stray_ids: list[int] = field(default_factory=list)
    # Files where a folder of cache files belongs (no writer makes one): they would stop every
    # repair of that folder's files, so they go like any stray.
    misplaced: list[str] = field(default_factory=list)
    # Positions of damaged events that hold no live fragment's body (a cycle's report, a
    # deleted fragment's history): counted in `checked`, not findings, since no copy of
    # anything live is lost; `verify` names them too.
    unattributed: list[int] = field(default_factory=list)
    log_marks: dict[str, int] = field(default_factory=dict)  # see Scrubber.done

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f"{f.copy}/{f.fault}"] = out.get(f"{f.copy}/{f.fault}", 0) + 1
        if self.index_file:
            out[f"index-file/{self.index_file}"] = 1
        if self.strays_removed:
            out["stray"] = self.strays_removed
        return out


class Scrubber:
    """Checks the cache files, the in-memory index and the index file against the ledger,
    which mirrors the log's current state (content hash, version and embedding digest)."""

    def __init__(
        self,
        cache: FragmentCache,
        index: VectorIndex,
        ledger: HealthLedger,
        lock: Any,
        head: Callable[[], int],
        refresh: Callable[[], Any] = lambda: None,
        unreadable: Callable[[], Iterable[Any]] = tuple,
        answered: Callable[[list[UUID]], set[tuple[str, int]]] = lambda _: set(),
        log_passes: int = LOG_PASSES,
        logged_embeddings: Callable[[list[str]], dict[str, bytes | None]] = lambda _: {},
    ):
        # Fragments' vectors as the log holds them, by uuid hex (None: it holds none
        # readable), for ledger rows that do not know theirs (see _scrub_index).
        self._logged_embeddings = logged_embeddings
        self._unreadable = unreadable  # the log's events that fail their checksum
        self._answered = answered  # of those, (uuid, version) a later event stands in for
        self.cache = cache
        self.index = index
        self.ledger = ledger
        self._lock = lock  # guards the ledger connection and the in-memory index
        self._head = head
        self._refresh = refresh  # catches the ledger up with the log
        self.log_passes, self.log_slice_min = log_passes, LOG_SLICE_MIN  # see LOG_PASSES
        self.stale_after = STALE_AFTER
        self.settled_ns = SETTLED_NS
        self._expected = Expected()  # as of the last scrub (see snapshot)
        self._listings: dict[str, Listing] = {}  # by cache folder, as of the last scrub

    def scrub(
        self, deep: bool = False, ledger_sound: Callable[[], bool] = lambda: True
    ) -> ScrubReport | None:
        """Compare every copy with a snapshot of the ledger, then confirm each difference
        against the ledger as it is after: writes go on during a scrub, and a fragment
        written meanwhile is neither a stray to remove nor a loss to record. The log's own
        checksums: all of them if `deep`, else on the rolling schedule (see LOG_PASSES).

        Nothing is changed (no stray removed) before `ledger_sound()` says the ledger the
        differences were found against is sound (the dream cycle checks its pages meanwhile,
        on another thread); if it is not, the scrub stops there and returns None."""
        expected, head = self.snapshot()
        report = ScrubReport()
        self._scrub_cache(expected, report, deep)
        self._scrub_index(expected, report)
        self._refresh()
        logged = self._scrub_log(report, head, deep)
        if not ledger_sound():
            return None
        self._confirm(report)
        # The log's own damage first: a copy of a body that is lost is rewritten from its
        # restatement, so the healer should meet the body's finding before the copies'.
        report.findings[:0] = logged
        return report

    def snapshot(self) -> tuple[Expected, int]:
        """What every copy should hold, as the ledger says now, and the log's head it
        reflects: the last scrub's, with the rows changed since."""
        with self._lock:
            before = self._expected
            changes = self.ledger.scan_changes(before.tick)
            now = before.updated(changes) if before.follows(changes) else None
            if now is None or now.count != changes.count:
                # Another clock (the ledger's tables made anew), or rows gone (a reset met
                # before its replay ended): every row is read again, the old state let go
                # first (two at once would double the peak).
                self._expected = Expected()
                del before, now, changes
                now = Expected().updated(self.ledger.scan_changes())
            self._expected = now
            return now, self._head()

    def forget(self) -> None:
        """Let go of what the last scrub kept (the ledger's rows, the folders' listings):
        after a rebuild every row and file is new, and the next scrub reads them all anyway."""
        with self._lock:
            self._expected = Expected()
            self._listings = {}

    def done(self, report: ScrubReport) -> None:
        """Keep the scrub's progress through the log, once its findings are recorded (a
        crash before that checks the same events again)."""
        if report.log_marks:
            with self._lock:
                self.ledger.set_marks(report.log_marks)

    def _log_ranges(self, head: int, deep: bool) -> tuple[list[tuple[int, int]], dict[str, int]]:
        """The log positions (after, upto] to check now, and the marks to keep once done."""
        with self._lock:
            verified, cursor = self.ledger.marks(LOG_VERIFIED, LOG_CURSOR)
        if deep or not 0 < verified <= head:  # never scrubbed, or another log: all of it
            return [(0, head)], {LOG_VERIFIED: head, LOG_CURSOR: 0}
        size = max(self.log_slice_min, -(-verified // self.log_passes))
        if size >= verified:
            return [(0, head)], {LOG_VERIFIED: head, LOG_CURSOR: 0}
        cursor = cursor if 0 <= cursor < verified else 0
        end = cursor + size
        ranges = [(cursor, min(end, verified)), (verified, head)]
        if end > verified:  # wrapped: on from the start
            end -= verified
            ranges.append((0, end))
        return ranges, {LOG_VERIFIED: head, LOG_CURSOR: end}

    def _scrub_log(self, report: ScrubReport, head: int, deep: bool) -> list[Finding]:
        """Every stored event whose checksum fails, among those checked now (see
        _log_ranges), as one finding per fragment."""
        ranges, marks = self._log_ranges(head, deep)
        versions: dict[str, list[int]] = {}
        positions: dict[str, list[int]] = {}
        damaged = (
            stored
            for after, upto in ranges
            if upto > after
            for stored in self._unreadable(after, upto)
        )
        for stored in damaged:
            if isinstance(stored.originator_id, UUID):
                uuid = str(stored.originator_id)
                versions.setdefault(uuid, []).append(stored.originator_version)
                positions.setdefault(uuid, []).append(stored.id)
            else:  # the id itself is damaged
                report.unattributed.append(stored.id)
        report.checked["log_events"] = sum(
            upto - after for after, upto in ranges if upto > after
        )  # positions, gaps included
        report.checked["log_deep"] = int(ranges == [(0, head)])
        report.log_marks = marks
        report.checked["log_damaged_events"] = sum(map(len, positions.values())) + len(
            report.unattributed
        )
        if not versions:
            report.checked["log_damaged_not_live"] = len(report.unattributed)
            return []
        with self._lock:
            rows = {r["uuid"]: r for r in self.ledger.rows_for(versions)}
        answered = self._answered([UUID(u) for u in versions])
        findings = []
        for uuid, all_damaged in versions.items():
            # Damage a repair has answered stays in the log (it is append-only), not in
            # the findings: the fragment's state no longer depends on it.
            damaged = [v for v in all_damaged if (uuid, v) not in answered]
            if not damaged:
                continue
            row = rows.get(uuid)
            if row is None or row["status"] in GONE:
                report.unattributed.extend(positions[uuid])
            else:
                findings.append(
                    Finding(
                        uuid,
                        row["id"],
                        "log-body",
                        "corrupt",
                        tuple(damaged),
                        recorded_identity(row),
                    )
                )
        report.checked["log_damaged_not_live"] = len(report.unattributed)
        return findings

    def _confirm(self, report: ScrubReport) -> None:
        wanted = {f.uuid for f in report.findings}
        wanted |= {dashed_uuid(h) for h, _ in report.stray_files if h}
        with self._lock:
            for path in report.misplaced:  # first: a file's place is then simply empty
                if not os.path.isdir(path):
                    try:
                        os.unlink(path)
                        report.strays_removed += 1
                    except FileNotFoundError:
                        pass
            fresh = {r["uuid"]: r for r in self.ledger.rows_for(wanted)}
            confirmed = []
            for f in report.findings:
                row = fresh.get(f.uuid)
                fault = self._fault_now(f.copy, row)
                if fault:
                    confirmed.append(Finding(f.uuid, row["id"], f.copy, fault))
            for hex_, path in report.stray_files:
                row = fresh.get(dashed_uuid(hex_)) if hex_ else None
                if row is not None:
                    fault = self._fault_now("cache", row)
                    if fault:
                        confirmed.append(Finding(row["uuid"], row["id"], "cache", fault))
                elif hex_ is not None or _abandoned(path):
                    # No fragment of this log, or a temp file no writer has touched lately.
                    try:
                        os.unlink(path)
                        report.strays_removed += 1
                    except (FileNotFoundError, IsADirectoryError, PermissionError):
                        pass
            if report.stray_ids:
                known = set(self.ledger.faiss_ids_known(report.stray_ids))
                gone = [i for i in report.stray_ids if i not in known]
                self.index.remove(gone)
                report.strays_removed += len(gone)
        report.findings = confirmed

    def _fault_now(self, copy: str, row: dict[str, Any] | None) -> str | None:
        """The fault of a copy against the ledger's current row (under the lock)."""
        if row is None:
            return None
        deleted = row["status"] in GONE
        if copy == "cache":
            path = str(self.cache.path_of(row["uuid"]))
            if deleted:
                return "extra" if os.path.exists(path) else None
            return self._file_fault(path, row)
        fid = row["faiss_id"]
        present = self.index.vector(fid)
        if deleted:
            return "extra" if present is not None else None
        if present is None:
            return "missing"
        expected = row["embedding_fingerprint"]
        return None if int(vector_fingerprints(present[None, :])[0]) == expected else "corrupt"

    def _scrub_cache(self, expected: Expected, report: ScrubReport, deep: bool = False) -> None:
        # Folder by folder: each expected file costs what opening, reading and hashing it
        # costs, since its digest is the one the ledger expects (a missing one fails to
        # open); only a file that differs is parsed to say how (in _confirm). The folder's
        # listing says what is there beyond what the ledger expects (see _listing).
        root = str(self.cache.root)
        shards = sorted({n for n in os.listdir(root) if len(n) == 2} | expected.folders.keys())
        on_disk = 0
        now = self._fs_clock()
        with ReadAhead(root) as ahead:
            for at, shard in enumerate(shards):
                started = time.perf_counter()
                files = self._scrub_folder(root, shard, expected, report, now, deep)
                on_disk += files
                if ahead.cold(time.perf_counter() - started, files):
                    for following in shards[at + 1 : at + 1 + READ_AHEAD_FOLDERS]:
                        ahead.ask(following, expected.folders.get(following, NO_FILES))
        report.checked["cache_files"] = on_disk
        # Whether this scan read the disk (and how far ahead): a scrub's time means little
        # without it, since a cold page cache costs it several times a warm one.
        report.checked["cache_folders_read_ahead"] = len(ahead.asked)

    def _scrub_folder(
        self,
        root: str,
        shard: str,
        expected: Expected,
        report: ScrubReport,
        now: int | None,
        deep: bool,
    ) -> int:
        """One cache folder scrubbed: its findings added to the report; the files it holds."""
        path = f"{root}/{shard}"
        folder = expected.folders.get(shard, NO_FILES)
        try:
            # Files are opened relative to their folder (openat): one path lookup per
            # folder, not one per file.
            folder_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError) as exc:
            live = folder.live().hex_list()
            report.findings.extend(_finding(hex_, "cache", "missing") for hex_ in live)
            if isinstance(exc, NotADirectoryError) and is_shard(shard):
                report.misplaced.append(path)
            return 0
        try:
            listing = self._listing(shard, folder_fd, folder, now, reuse=not deep)
            report.findings.extend(_scrub_files(folder_fd, folder))
        finally:
            os.close(folder_fd)
        report.findings.extend(_finding(hex_, "cache", "extra") for hex_ in listing.gone_present)
        # What the snapshot does not know of: confirmed (or not) after the scan.
        report.stray_files.extend((stem, f"{path}/{name}") for stem, name in listing.strays)
        return listing.files

    def _listing(
        self, shard: str, folder_fd: int, folder: Folder, now: int | None, reuse: bool = True
    ) -> Listing:
        """What a cache folder holds beyond its live fragments' files: the last scrub's
        answer (if `reuse`) while neither the folder (see SETTLED_NS) nor the ledger's rows
        for it changed since; else from a fresh listing. `now`: the file system's clock
        before this scrub listed anything (None if unknown: no listing is trusted later)."""
        st = os.fstat(folder_fd)
        stamp = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        last = self._listings.get(shard)
        if (
            reuse
            and last is not None
            and last.stamp == stamp
            and last.settled
            and last.folder is folder
        ):
            return last
        names = set(os.listdir(folder_fd))
        known = {f"{hex_}.json" for hex_ in folder.hex_list()}
        strays = []
        for name in names.difference(known):
            strays.append((fragment_stem(name, shard), name))
        settled = now is not None and max(stamp[:2]) < now - self.settled_ns
        gone = folder.take(folder.gone).hex_list()
        listing = Listing(
            stamp,
            settled,
            folder,
            len(names),
            tuple(hex_ for hex_ in gone if f"{hex_}.json" in names),
            tuple(strays),
        )
        self._listings[shard] = listing
        return listing

    def _fs_clock(self) -> int | None:
        """The time by the clock that stamps the cache's folders (on a network file system,
        the server's), read by touching a file beside them; None if it cannot be."""
        path = f"{self.cache.root}/{CLOCK_FILE}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
            os.utime(path)
            return os.stat(path).st_mtime_ns
        except OSError:  # a read-only cache, say: every folder is listed
            return None

    def _file_fault(self, path: str, row: dict[str, Any]) -> str | None:
        """None if the file holds the digest the ledger's whole row expects; else how it
        differs."""
        try:
            data = read_whole(path)
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "unreadable"
        if hashlib.sha256(data).hexdigest() == row["cache_digest"]:
            return None
        cached, fault = self.cache.inspect(row["uuid"])
        if cached is not None:
            fault = cache_fault(cached, row) or "corrupt"
        return fault

    def _scrub_index(self, expected: Expected, report: ScrubReport) -> None:
        with self._lock:
            ids, fingerprints = self.index.fingerprints()
            report.index_file = self.index.check_file(self._head(), self.stale_after)
        # Vectorised: the ledger's fingerprints sorted by FAISS id, looked up for every entry.
        known = expected.index
        count = len(known.ids)
        at, found = looked_up(known.ids, ids)
        hexes = known.hexes
        for i in np.flatnonzero(found & ~known.live[at]):
            report.findings.append(_finding(hexes[at[i]].decode(), "index", "extra"))
        # A fingerprint of 0 is unknown (a row the ledger made late, from a finding about an
        # unreadable event that did not record it): such a vector is checked against the
        # log's, where the log holds one; where it holds none, the vector may be the only
        # copy of the embedding left, and nothing can say it is wrong.
        unknown = found & known.live[at] & (known.fingerprints[at] == 0)
        wrong = found & known.live[at] & ~unknown & (fingerprints != known.fingerprints[at])
        if unknown.any():
            logged = self._logged_embeddings(
                [hexes[at[i]].decode() for i in np.flatnonzero(unknown)]
            )
            for i in np.flatnonzero(unknown):
                embedding = logged.get(hexes[at[i]].decode())
                if embedding is not None:
                    vector = np.frombuffer(embedding, dtype="<f4")[None, :]
                    wrong[i] = int(vector_fingerprints(vector)[0]) != fingerprints[i]
        for i in np.flatnonzero(wrong):
            report.findings.append(_finding(hexes[at[i]].decode(), "index", "corrupt"))
        present = np.zeros(count, dtype=bool)
        present[at[found]] = True
        absent = known.live & ~present
        for i in np.flatnonzero(absent):
            report.findings.append(_finding(hexes[i].decode(), "index", "missing"))
        report.stray_ids = ids[~found].tolist()  # not in the snapshot: confirmed after the scan
        report.checked["index_vectors"] = len(ids)


def _scrub_files(folder_fd: int, folder: Folder) -> list[Finding]:
    """The findings among live fragments' cache files in one folder (the scrub's inner loop:
    one read and a sha256 per file, and as little else as can be)."""
    findings = []
    sha256 = hashlib.sha256
    live = folder.live()
    digests = live.digests.tobytes()
    for at, hex_ in enumerate(live.hex_list()):
        try:
            data = read_whole(f"{hex_}.json", folder_fd)
        except FileNotFoundError:
            findings.append(_finding(hex_, "cache", "missing"))
            continue
        except OSError:
            findings.append(_finding(hex_, "cache", "unreadable"))
            continue
        if sha256(data).digest() != digests[32 * at : 32 * at + 32]:
            # How it differs is told from the ledger's whole row, in _confirm.
            findings.append(_finding(hex_, "cache", "corrupt"))
    return findings


# The read-ahead of the cache's folders (ReadAhead): how many folders ahead of the scan, with
# how many threads, once two folders in a row of at least READ_AHEAD_MIN_FILES took longer
# than COLD_FILE_S a file (about 10 us a file when the page cache holds them, at a million;
# 100 us and more when it does not).
READ_AHEAD_FOLDERS = 2
READ_AHEAD_THREADS = 4
READ_AHEAD_MIN_FILES = 256
COLD_FILE_S = 40e-6


class ReadAhead:
    """The next cache folders' files asked of the disk by a few threads, once the scan proves
    to be reading them from it rather than from the page cache.

    The scan reads one small file at a time, each a wait for the disk when the page cache
    does not hold it: a million cache files read cold one at a time took 104.5 s on this
    project's 2-core machine, and 37.7 s with eight reads in flight. These threads open the
    next folders' files (their inodes read) and ask the kernel for their bytes
    (`posix_fadvise` WILLNEED), so that the scan finds them in memory; they decide nothing
    and change nothing. A scan whose files are in memory never starts them."""

    def __init__(self, root: str, threads: int = READ_AHEAD_THREADS) -> None:
        self.root, self.threads, self.on, self._slow = root, threads, False, 0
        self._pool: ThreadPoolExecutor | None = None
        self.asked: set[str] = set()  # the folders asked for

    def cold(self, seconds: float, files: int) -> bool:
        """Whether the scan reads from the disk: on from the second folder in a row that
        proved it (one slow folder may be a pause of the process's own)."""
        if not self.on and files >= READ_AHEAD_MIN_FILES:
            self._slow = self._slow + 1 if seconds / files > COLD_FILE_S else 0
            self.on = self._slow >= 2
        return self.on

    def ask(self, shard: str, folder: Folder) -> None:
        if shard in self.asked:
            return
        self.asked.add(shard)
        names = [f"{hex_}.json" for hex_ in folder.live().hex_list()]
        if not names:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="carma-read-ahead")
        step = -(-len(names) // self.threads)
        for start in range(0, len(names), step):
            self._pool.submit(_read_ahead, f"{self.root}/{shard}", names[start : start + step])

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _read_ahead(folder: str, names: list[str]) -> None:
    """Each file's inode read (its open) and its bytes asked of the disk, not waited for."""
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # (the scan says what is wrong with the folder)
    try:
        for name in names:
            try:
                fd = os.open(name, os.O_RDONLY, dir_fd=folder_fd)
            except OSError:
                continue
            try:
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                else:
                    os.read(fd, READ_SIZE)
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        os.close(folder_fd)


READ_SIZE = 1 << 16  # a cache file is a few hundred bytes: one read, one more if larger


def read_whole(path: str, dir_fd: int | None = None) -> bytes:
    """A file's bytes, read the cheapest way Python has (no file object, no buffer: one
    open, one read, one close for a small file); the benchmark's raw baseline reads the
    same way. `path` is relative to the folder `dir_fd` is open on, if given. A read shorter
    than asked is the end of a regular file."""
    fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    try:
        data = os.read(fd, READ_SIZE)
        return data + read_rest(fd) if len(data) == READ_SIZE else data
    finally:
        os.close(fd)


def read_rest(fd: int) -> bytes:
    rest = []
    while chunk := os.read(fd, READ_SIZE):
        rest.append(chunk)
    return b"".join(rest)


TEMP_FILE_GRACE_S = 60  # a temp file younger than this may belong to a writer at work


def _abandoned(path: str) -> bool:
    try:
        return time.time() - os.stat(path).st_mtime > TEMP_FILE_GRACE_S
    except OSError:
        return False


def _finding(hex_: str, copy: str, fault: str) -> Finding:
    """A finding about a copy of a fragment, before it is confirmed (see Scrubber._confirm,
    which also names the fragment's key, from the ledger's row as it is then)."""
    return Finding(dashed_uuid(hex_), "", copy, fault)


def recorded_identity(row: dict[str, Any]) -> dict[str, Any]:
    """What the ledger knows of a fragment whose own events are unreadable (never its text
    or metadata: see Fragment.mark_unreadable)."""
    return {
        "key": row["id"],
        "namespace": row["namespace"],
        "content_hash": row["content_hash"],
        "written_at": row["written_at"],
        "version": row["version"],
        # 0: unknown (a row made late, from a finding that did not record it)
        "embedding_fingerprint": row["embedding_fingerprint"] or None,
    }


def is_exact_copy(cached: Any, row: dict[str, Any] | None, digest: str | None = None) -> bool:
    """Whether a readable cache file holds the fragment's body exactly: its text has the
    recorded content hash, and its id, namespace and metadata are the ledger's (where the
    ledger knows them). Its version may lag: the body is what counts."""
    recorded = digest or (row["content_hash"] if row else None)
    if recorded is None or content_hash(cached.text) != recorded:
        return False
    if row is None:
        return True
    return (
        cached.key == row["id"]
        and cached.namespace == row["namespace"]
        and (not row["metadata"] or canonical_json(cached.metadata) == row["metadata"])
    )


def cache_fault(cached: Any, row: dict[str, Any]) -> str | None:
    """How a readable cache file differs from the ledger's row: 'stale', 'corrupt' or None."""
    if cached.version < row["version"]:
        return "stale"
    if (
        cached.version != row["version"]
        or cached.content_hash != row["content_hash"]
        or content_hash(cached.text) != row["content_hash"]
        or cached.key != row["id"]
        or cached.namespace != row["namespace"]
        or (row["metadata"] is not None and canonical_json(cached.metadata) != row["metadata"])
    ):
        return "corrupt"
    return None
