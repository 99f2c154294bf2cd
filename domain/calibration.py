"""How much of a reconstruction is real: a reconstructor calibrated on its own namespace.

Fidelity (the cosine of a rebuilt text's embedding to the surviving one) says how near the
meaning is, not how many of the original's words came back: a high cosine can be bought with
keywords in junk. So the reconstructor is tried on fragments whose bodies are known — each
hidden and rebuilt exactly as a real repair would be, then refined as later dream cycles
would refine it — and what it achieved is recorded. An approximate fragment's expected recall
is read off that record at its fidelity, on the curve of its refinement stage: refinement
buys fidelity faster than words, so a fragment refined up to a fidelity holds fewer of its
words than one rebuilt at that fidelity at the first attempt, and one curve for both would
promise the refined fragment too much.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from carma.domain.fragment import CARMA_UUID_NAMESPACE
from eventsourcing.domain import Aggregate, event

SAMPLE_SIZE = 80  # fragments tried per calibration
MIN_SAMPLE = 20  # fewer exact fragments than this: too small to calibrate, and said so
REFRESH_GROWTH = 1.5  # recalibrate once the namespace has grown by half
NAMESPACE_SOURCE = "namespace"  # a calibration measured on the namespace's own fragments


def calibration_id(namespace: str, method: str) -> UUID:
    return uuid5(CARMA_UUID_NAMESPACE, f"calibration:{method}:{namespace}")


class ReconstructionCalibration(Aggregate):
    """What one reconstruction method achieves in one namespace, measured on a sample of its
    exact fragments. A calibration runs over several dream cycles: each records the sample
    points it measured (so that progress survives a restart), the last records the fit."""

    # Topics are part of the log's format (inside each event's checksum and the chain's
    # MAC): frozen as first stored, whatever the module is called now.
    TOPIC = "domain.calibration:ReconstructionCalibration"

    class Created(Aggregate.Created):  # the library asks every event class for a topic
        TOPIC = "domain.calibration:ReconstructionCalibration.Created"

    @staticmethod
    def create_id(namespace: str, method: str, **_: Any) -> UUID:
        return calibration_id(namespace, method)

    @event(
        "CalibrationOpened", topic="domain.calibration:ReconstructionCalibration.CalibrationOpened"
    )
    def __init__(self, namespace: str, method: str) -> None:
        self.namespace = namespace
        self.method = method
        self.sample: list[str] = []  # fragment uuids of the calibration under way
        self.measured: list[str] = []  # those of them measured (or passed over) so far
        # [fidelity, recall, content-word recall, refinement stage] of each attempt
        self.points: list[list[float]] = []
        self.curve: list[list[float]] | None = None  # [fidelity, expected recall], rising
        self.curves: list[list[list[float]]] | None = None  # the same, one per stage
        self.summary: dict[str, Any] | None = None
        self.calibrated_size = 0  # exact fragments in the namespace when last calibrated
        self.declined: dict[str, int] | None = None

    @property
    def in_progress(self) -> bool:
        return bool(self.sample)

    def pending(self) -> list[str]:
        done = set(self.measured)
        return [u for u in self.sample if u not in done]

    def due(self, exact_fragments: int) -> bool:
        """A namespace is calibrated once, and again when it has grown by half."""
        if self.in_progress:
            return True
        if exact_fragments < MIN_SAMPLE:
            return False
        return self.curve is None or exact_fragments >= REFRESH_GROWTH * self.calibrated_size

    def decline(self, exact_fragments: int, cycle_id: UUID | None) -> bool:
        """Say, once, that the namespace is too small to calibrate; it is not guessed."""
        if self.declined is not None or self.curve is not None or self.in_progress:
            return False
        self._declined(exact_fragments=exact_fragments, needed=MIN_SAMPLE, cycle_id=cycle_id)
        return True

    @event(
        "CalibrationDeclined",
        topic="domain.calibration:ReconstructionCalibration.CalibrationDeclined",
    )
    def _declined(self, exact_fragments: int, needed: int, cycle_id: UUID | None) -> None:
        self.declined = {"exact_fragments": exact_fragments, "needed": needed}
        self.sample = []

    def start(
        self,
        sample: list[str],
        exact_fragments: int,
        reconstructor: dict[str, Any],
        cycle_id: UUID | None,
    ) -> None:
        if len(sample) < MIN_SAMPLE:
            raise ValueError(f"a calibration needs at least {MIN_SAMPLE} fragments")
        self._started(
            sample=sample,
            exact_fragments=exact_fragments,
            reconstructor=reconstructor,
            cycle_id=cycle_id,
        )

    @event(
        "CalibrationStarted",
        topic="domain.calibration:ReconstructionCalibration.CalibrationStarted",
    )
    def _started(
        self,
        sample: list[str],
        exact_fragments: int,
        reconstructor: dict[str, Any],
        cycle_id: UUID | None,
    ) -> None:
        self.sample, self.measured, self.points = list(sample), [], []
        self.started_size = exact_fragments
        self.reconstructor = reconstructor

    def measure(
        self, fragments: list[str], points: list[list[float]], cycle_id: UUID | None
    ) -> None:
        """Record sample fragments measured (a fragment deleted meanwhile adds no point):
        each point is [fidelity, token recall, content-word recall, stage] of one attempt,
        stage 0 for the first reconstruction, k for its k-th refinement."""
        for point in points:
            if (
                len(point) != 4
                or not all(0.0 <= p <= 1.0 for p in point[:3])
                or point[3] != int(point[3])
                or point[3] < 0
            ):
                raise ValueError(
                    "a calibration point is 3 numbers in [0, 1] and a stage"
                    f" (0, 1, ...), not {point}"
                )
        self._measured(fragments=fragments, points=points, cycle_id=cycle_id)

    @event(
        "CalibrationSampled",
        topic="domain.calibration:ReconstructionCalibration.CalibrationSampled",
    )
    def _measured(
        self, fragments: list[str], points: list[list[float]], cycle_id: UUID | None
    ) -> None:
        self.measured += fragments
        self.points += points

    def complete(self, cycle_id: UUID | None) -> bool:
        """Fit expected recall to fidelity once every sample fragment is measured. Too few
        points (the sample shrank by deletions) is a declined calibration, not a guess."""
        if not self.in_progress or self.pending():
            return False
        if len({round(p[0], 6) for p in self.points}) < 2 or len(self.measured) < MIN_SAMPLE:
            self._declined(exact_fragments=len(self.measured), needed=MIN_SAMPLE, cycle_id=cycle_id)
            return True
        n = len(self.points)
        summary = {
            "fragments": len(self.sample),
            "points": n,
            "exact_fragments": self.started_size,
            "mean_fidelity": round(sum(p[0] for p in self.points) / n, 4),
            "mean_recall": round(sum(p[1] for p in self.points) / n, 4),
            "mean_content_recall": round(sum(p[2] for p in self.points) / n, 4),
            "reconstructor": self.reconstructor,
        }
        stages = [
            [(p[0], p[1]) for p in self.points if _stage(p) == k]
            for k in range(max(_stage(p) for p in self.points) + 1)
        ]
        summary["points_per_stage"] = [len(points) for points in stages]
        # The fidelities measured, overall and per stage: below them, nothing was measured
        # and no recall is promised (read_off).
        summary["fidelity_range"] = _range(p[0] for p in self.points)
        summary["fidelity_ranges"] = [_range(f for f, _ in points) for points in stages if points]
        self._calibrated(
            curve=monotone_fit([(p[0], p[1]) for p in self.points]),
            curves=[monotone_fit(points) for points in stages if points],
            summary=summary,
            cycle_id=cycle_id,
        )
        return True

    @event(
        "ReconstructionCalibrated",
        topic="domain.calibration:ReconstructionCalibration.ReconstructionCalibrated",
    )
    def _calibrated(
        self,
        curve: list[list[float]],
        summary: dict[str, Any],
        cycle_id: UUID | None,
        curves: list[list[list[float]]] | None = None,
    ) -> None:
        # (curves defaults: calibrations recorded before stages were told apart lack them)
        self.curve, self.curves, self.summary = curve, curves, summary
        self.calibrated_size = summary["exact_fragments"]
        self.sample, self.declined = [], None

    def adopt(self, shipped: dict[str, Any], cycle_id: UUID | None) -> bool:
        """Take, until the namespace's own calibration completes, a calibration measured
        elsewhere on public text (`shipped`: its curve, curves per stage and summary, whose
        `source` says where it was measured): an estimate, labelled as such everywhere it is
        read, better than none while the namespace is too small or not measured yet. Only a
        calibration with no curve of its own and none under way adopts one (a calibration
        under way keeps its sample). Recorded as any calibration's fit is, so that every
        reading of expected recall goes through the same projection; its `exact_fragments`
        is 0 (none of this namespace's), which leaves the namespace due for its own."""
        if self.curve is not None or self.in_progress:
            return False
        if not shipped.get("summary", {}).get("source"):
            raise ValueError("an adopted calibration says where it was measured (its source)")
        self._calibrated(
            curve=shipped["curve"],
            curves=shipped["curves"],
            summary={**shipped["summary"], "exact_fragments": 0},
            cycle_id=cycle_id,
        )
        return True

    @property
    def source(self) -> str:
        """Where the curve in force was measured: the namespace's own fragments, or the
        public text named by an adopted calibration."""
        return (self.summary or {}).get("source") or NAMESPACE_SOURCE

    def expected_recall(self, fidelity: float, refinements: int = 0) -> float | None:
        if self.curve is None:
            return None
        curve = curve_for(self.curve, self.curves, refinements)
        return read_off(curve, fidelity, lowest_measured(self.summary, curve, refinements))


def _range(fidelities: Any) -> list[float]:
    values = list(fidelities)
    return [round(min(values), 6), round(max(values), 6)]


def lowest_measured(
    summary: dict[str, Any] | None, curve: list[list[float]], refinements: int = 0
) -> float:
    """The lowest fidelity a calibration measured at a refinement stage. Calibrations recorded
    before their ranges were kept say only their curve: its lowest breakpoint (the mean of the
    lowest block of points) stands in, a little above the true lowest."""
    ranges = (summary or {}).get("fidelity_ranges")
    if ranges:
        return ranges[min(max(refinements, 0), len(ranges) - 1)][0]
    overall = (summary or {}).get("fidelity_range")
    return overall[0] if overall else curve[0][0]


# Fidelities are cosines rounded to a few digits: a hair below the lowest measured is in range.
FIDELITY_SLACK = 0.005


def _stage(point: list[float]) -> int:
    # (points recorded before stages were told apart have none: count them as first attempts)
    return int(point[3]) if len(point) > 3 else 0


def curve_for(
    curve: list[list[float]], curves: list[list[list[float]]] | None, refinements: int
) -> list[list[float]]:
    """The curve of a fragment refined `refinements` times: its stage's, or the last stage's
    beyond those the calibration reached; the pooled curve of a calibration without stages."""
    if not curves:
        return curve
    return curves[min(max(refinements, 0), len(curves) - 1)]


def monotone_fit(points: list[tuple[float, float]], min_block: int = 10) -> list[list[float]]:
    """Expected recall as a non-decreasing function of fidelity (pool-adjacent-violators,
    weighted): the breakpoints [mean fidelity, mean recall] of its blocks. Blocks pool at least
    `min_block` points, so that no single sample sets a level. As a step function its mean
    over the sample is the sample's mean recall; read_off interpolates between the steps."""
    ordered = sorted(points)
    # Initial blocks of min_block points each (the last may take the remainder).
    blocks: list[list[float]] = []  # [weight, sum fidelity, sum recall]
    for start in range(0, len(ordered), min_block):
        chunk = ordered[start : start + min_block]
        if blocks and len(chunk) < min_block:
            blocks[-1] = [
                blocks[-1][0] + len(chunk),
                blocks[-1][1] + sum(f for f, _ in chunk),
                blocks[-1][2] + sum(r for _, r in chunk),
            ]
            continue
        blocks.append([len(chunk), sum(f for f, _ in chunk), sum(r for _, r in chunk)])
    merged: list[list[float]] = []
    for block in blocks:
        merged.append(block)
        while len(merged) > 1 and merged[-2][2] / merged[-2][0] >= merged[-1][2] / merged[-1][0]:
            w, f, r = merged.pop()
            merged[-1] = [merged[-1][0] + w, merged[-1][1] + f, merged[-1][2] + r]
    return [[round(f / w, 6), round(r / w, 6)] for w, f, r in merged]


def read_off(
    curve: list[list[float]], fidelity: float, lowest: float | None = None
) -> float | None:
    """The curve at a fidelity: linear between breakpoints, flat above the top one. Between
    the lowest fidelity measured (`lowest`) and the lowest breakpoint, the curve's overall
    slope carries on down: a reconstruction worse than most the sample produced is not
    promised their recall. Below `lowest` nothing was measured: None, never a guess."""
    if lowest is not None and fidelity < lowest - FIDELITY_SLACK:
        return None
    if fidelity <= curve[0][0]:
        (f0, r0), (f1, r1) = curve[0], curve[-1]
        slope = (r1 - r0) / (f1 - f0) if f1 > f0 else 0.0
        return round(max(r0 - slope * (curve[0][0] - fidelity), 0.0), 4)
    for (f0, r0), (f1, r1) in zip(curve, curve[1:]):
        if fidelity <= f1:
            if f1 <= f0:
                return round(r1, 4)
            return round(r0 + (r1 - r0) * (fidelity - f0) / (f1 - f0), 4)
    return round(curve[-1][1], 4)
