"""Calibrator: what the reconstructor achieves in a namespace, measured on its exact fragments.

Each fragment of a sample is hidden and rebuilt exactly as a real repair would rebuild it:
from its embedding and its nearest exact neighbours of the same namespace (never itself),
with the healer's own budgets (texts scored, not seconds: the same work under any load, so
that what is measured here is what a repair does), then refined as later dream cycles would
refine it. Each attempt gives a point (fidelity, token recall, content-word recall,
refinement stage) against the known original; the ReconstructionCalibration aggregate records
the points and their monotone fit per stage, from which an approximate fragment's expected
recall is read at its fidelity and stage.

A calibration costs a real repair's time per sample fragment, so it runs where it is wanted
(a namespace with approximate bodies, or on request), within each dream cycle's budget, and
resumes in the next cycle from the points already recorded. It holds the store's lock only
to look up neighbours: queries go on meanwhile.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import numpy as np
from carma.domain import (
    ConflictError,
    Fragment,
    ReconstructionCalibration,
    content_hash,
)
from carma.domain.calibration import MIN_SAMPLE, NAMESPACE_SOURCE, SAMPLE_SIZE
from carma.healing.healer import NEIGHBOURS, Healer
from carma.healing.reconstructor import Reconstruction, vocabulary_of
from carma.projections import HealthLedger

REFINEMENTS = 3  # refinement steps tried per sample fragment (later cycles' work)
RECORD_EVERY = 5  # sample fragments measured per recorded event
CALIBRATE_BUDGET_S = 20.0  # per dream cycle

_TOKEN = re.compile(r"\w+")
# Function words: what is left is what a reader needs back (content-word recall).
STOPWORDS = frozenset(
    """
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves may might must shall
also one two use used using e g ie eg
""".split()
)


def _words(text: str | None) -> set[str]:
    return set(_TOKEN.findall(text.lower())) if text else set()


def token_recall(original: str, text: str | None) -> float:
    """The share of the original's distinct words that the text holds."""
    words = _words(original)
    return len(words & _words(text)) / len(words) if words else 0.0


def content_recall(original: str, text: str | None) -> float:
    """The same, counting only content words (not function words, not single letters)."""
    words = {w for w in _words(original) if w not in STOPWORDS and len(w) > 1}
    return len(words & _words(text)) / len(words) if words else token_recall(original, text)


class Calibrator:
    def __init__(
        self,
        log: Any,
        healer: Healer,
        ledger: HealthLedger,
        lock: Any,
        refinements: int = REFINEMENTS,
        sample_size: int = SAMPLE_SIZE,
        shipped: Callable[[], dict[str, Any] | None] = lambda: None,
    ):
        self.log = log
        # A calibration measured on public text shipped with the package, for this model
        # and reconstructor (the composition root checks both): adopted where a namespace
        # has no calibration of its own yet, or is too small for one. Read when a cycle
        # calibrates, not when the store opens (most opens never calibrate).
        self._shipped = shipped
        self.healer = healer  # whose reconstructor, budgets and neighbours are calibrated
        self.ledger = ledger
        self._lock = lock
        self.refinements = refinements
        self.sample_size = max(sample_size, MIN_SAMPLE)

    @property
    def method(self) -> str | None:
        return None if self.healer.reconstructor is None else self.healer.reconstructor.method

    def describe(self) -> dict[str, Any]:
        """The reconstructor as calibrated: a change of any of these is a new calibration."""
        settings = {} if self.healer.reconstructor is None else self.healer.reconstructor.settings()
        return {
            "method": self.method,
            "fit": "isotonic per refinement stage",
            "neighbours": NEIGHBOURS,
            "reconstruct_evaluations": self.healer.reconstruct_evaluations,
            "refine_evaluations": self.healer.refine_evaluations,
            "refinements": self.refinements,
            **({"settings": settings} if settings else {}),
        }

    def wanted(self) -> list[str]:
        """Namespaces whose approximate bodies the current reconstructor made, those holding
        the most first: a cycle's budget goes where it gives the most fragments a figure."""
        with self._lock:
            counts = self.ledger.reconstructed_namespaces()
        mine = [(-count, ns) for ns, method, count in counts if method == self.method]
        return [ns for _, ns in sorted(mine)]

    @property
    def shipped(self) -> dict[str, Any] | None:
        """The shipped calibration, if it describes this reconstructor as it is now."""
        found = self._shipped()
        if found is None or found.get("summary", {}).get("reconstructor") != self.describe():
            return None
        return found

    def calibrate(
        self,
        namespaces: list[str],
        budget_s: float | None = None,
        cycle_id: UUID | None = None,
        force: bool = False,
        progress: Callable[[str, int, int], Any] | None = None,
    ) -> dict[str, Any]:
        """Calibrate each namespace where due (or `force`), in the order given, within
        `budget_s` seconds in all (None: until done); returns what became of each.

        The budget is spent on one namespace at a time, to the end, before the next: spread
        over every namespace a little at a time, it calibrated none of them in a store of
        many small namespaces. At least one sample fragment is measured per call, so that
        every call gets further. Namespaces the budget does not reach still adopt the
        shipped calibration where they have none (that costs no measuring)."""
        if self.method is None:
            return {}
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        shipped = self.shipped
        outcomes: dict[str, Any] = {}
        measured_any = False
        for ns in namespaces:
            may_measure = not (
                measured_any and deadline is not None and time.perf_counter() >= deadline
            )
            outcomes[ns] = self._calibrate(
                ns, deadline, cycle_id, force, progress, may_measure, shipped
            )
            measured_any = measured_any or outcomes[ns].get("measured_now", 0) > 0
        for outcome in outcomes.values():
            outcome.pop("measured_now", None)
        return outcomes

    def _calibrate(
        self,
        namespace: str,
        deadline: float | None,
        cycle_id: UUID | None,
        force: bool,
        progress: Callable[[str, int, int], Any] | None,
        may_measure: bool = True,
        shipped: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        assert self.method is not None
        calibration: ReconstructionCalibration = self.log.calibration(namespace, self.method)
        adopted = False
        if shipped is not None and calibration.adopt(shipped, cycle_id):
            if not self._record(calibration):
                return {"status": "busy"}
            adopted = True
        with self._lock:
            exact = self.ledger.exact_uuids(namespace)
        stale = (
            calibration.summary is not None
            and calibration.summary.get("reconstructor") != self.describe()
        )
        elsewhere = calibration.curve is not None and calibration.source != NAMESPACE_SOURCE
        said = "adopted" if adopted else "current"  # an adopted curve is news for a cycle
        if not calibration.in_progress:
            if len(exact) < MIN_SAMPLE and calibration.curve is not None and not stale:
                return {"status": said, **(calibration.summary or {})}  # small, or it shrank
            if len(exact) < MIN_SAMPLE:
                if calibration.decline(len(exact), cycle_id):
                    self._record(calibration)
                return {"status": "too-small", "exact_fragments": len(exact), "needed": MIN_SAMPLE}
            if not (force or stale or calibration.due(len(exact))):
                return {"status": said, **(calibration.summary or {})}
            if not may_measure:  # the cycle's budget went to namespaces with more bodies
                meanwhile = {"meanwhile": calibration.source} if elsewhere else {}
                return {"status": "adopted" if adopted else "waiting", **meanwhile}
            # A sample that does not depend on the order fragments were written in.
            sample = sorted(
                exact, key=lambda u: hashlib.sha256(f"{namespace}:{u}".encode()).digest()
            )[: self.sample_size]
            calibration.start(sample, len(exact), self.describe(), cycle_id)
            if not self._record(calibration):
                return {"status": "busy"}  # another process is calibrating it
        started = len(calibration.measured)
        while calibration.pending() and may_measure:
            if (
                len(calibration.measured) > started
                and deadline is not None
                and time.perf_counter() >= deadline
            ):
                break
            measured, points = self._measure_some(calibration, deadline, namespace, progress)
            calibration.measure(measured, points, cycle_id)
            calibration.complete(cycle_id)
            if not self._record(calibration):
                return {"status": "busy"}
        done = {"measured_now": len(calibration.measured) - started}
        if calibration.in_progress:
            return {
                "status": "calibrating",
                "measured": len(calibration.measured),
                "of": len(calibration.sample),
                **done,
                **({"meanwhile": calibration.source} if elsewhere else {}),
            }
        # (measured_now: how many sample fragments this call measured; calibrate() drops it)
        if calibration.curve is None or calibration.source != NAMESPACE_SOURCE:
            # its sample shrank below the minimum by deletions: declined, not guessed
            return {"status": "too-small", **(calibration.declined or {}), **done}
        return {"status": "calibrated", **(calibration.summary or {}), **done}

    def _measure_some(
        self,
        calibration: ReconstructionCalibration,
        deadline: float | None,
        namespace: str,
        progress: Callable[[str, int, int], Any] | None,
    ) -> tuple[list[str], list[list[float]]]:
        batch = calibration.pending()[:RECORD_EVERY]
        fragments = self.log.fragments_by_uuid(UUID(u) for u in batch)
        measured: list[str] = []
        points: list[list[float]] = []
        for uuid in batch:
            if measured and deadline is not None and time.perf_counter() >= deadline:
                break
            fragment = fragments.get(UUID(uuid))
            if (
                fragment is not None
                and not fragment.deleted
                and not fragment.approximate
                and fragment.text is not None
                and fragment.embedding is not None
                and content_hash(fragment.text) == fragment.content_hash
            ):
                points += self.measure(fragment)
            measured.append(uuid)  # a fragment deleted meanwhile adds no point
            if progress:
                progress(
                    namespace, len(calibration.measured) + len(measured), len(calibration.sample)
                )
        return measured, points

    def measure(self, fragment: Fragment) -> list[list[float]]:
        """Hide the fragment's body and rebuild it as a repair would, then refine it as later
        cycles would: one point per attempt that the healer would record, with its stage."""
        reconstructor = self.healer.reconstructor
        assert reconstructor is not None and fragment.text is not None
        target = np.frombuffer(fragment.embedding, dtype="<f4")
        texts = [
            t for _, t in self.healer.neighbours(target, fragment.namespace, exclude=fragment.id)
        ]
        if not texts:
            return []
        result = reconstructor.reconstruct(target, texts, self.healer.reconstruct_evaluations)
        if result is None:
            return []
        points = [self._point(fragment.text, result, 0)]
        for stage in range(1, self.refinements + 1):
            better = reconstructor.refine(
                target, result, vocabulary_of(texts + [result.text]), self.healer.refine_evaluations
            )
            if round(better.fidelity, 6) <= round(result.fidelity, 6):
                break  # the healer records a refinement only when it raises the fidelity
            result = better
            points.append(self._point(fragment.text, result, stage))
        return points

    @staticmethod
    def _point(original: str, result: Reconstruction, stage: int) -> list[float]:
        return [
            round(min(max(result.fidelity, 0.0), 1.0), 6),
            round(token_recall(original, result.text), 6),
            round(content_recall(original, result.text), 6),
            stage,
        ]

    def _record(self, calibration: ReconstructionCalibration) -> bool:
        try:
            self.log.record(calibration)
            return True
        except ConflictError:
            return False
