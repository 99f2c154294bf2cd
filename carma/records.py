"""What the public API returns: pydantic models whose JSON is the documented contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["healthy", "approximate", "lost"]


class FragmentRecord(BaseModel):
    """A live fragment as `get`, `export` and (with a score) `search` return it."""

    model_config = ConfigDict(frozen=True)

    id: str
    namespace: str
    text: str | None  # None: the body is lost and nothing was left to rebuild it from
    metadata: dict[str, Any]
    version: int
    status: Status = "healthy"
    fidelity: float = 1.0
    expected_recall: float | None = None
    # Why an approximate body has no expected recall (not calibrated, too small to calibrate,
    # or a fidelity below the range its calibration measured); None otherwise.
    expected_recall_unknown: str | None = None
    # Where the calibration that expected recall is read off was measured: "namespace" (the
    # fragment's own namespace) or, until that is measured, the public text of a calibration
    # shipped with the package ("shipped public corpus"); None without an expected recall.
    expected_recall_source: str | None = None
    content_hash: str


class Hit(FragmentRecord):
    score: float


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    position: int
    version: int
    kind: str
    at: datetime
    detail: dict[str, Any]


class FragmentEvent(HistoryEntry):
    """An entry of `recent_history`: an event of a fragment, with the fragment's id and
    namespace."""

    id: str
    namespace: str


class BatchResult(BaseModel):
    """What a batch write did, item by item: `ids[i]` is the id of the i-th item."""

    ids: list[str]
    added: int = 0
    revised: int = 0
    unchanged: int = 0
    restored: int = 0  # exact copies of lost or approximate bodies, which restored them


class ImportResult(BaseModel):
    """What an import did: fragments added, revised, unchanged, restored (exact copies of
    lost or approximate bodies), and lines rejected (with why, in `problems`)."""

    added: int = 0
    revised: int = 0
    unchanged: int = 0
    restored: int = 0
    rejected: int = 0
    problems: list[str] = []
