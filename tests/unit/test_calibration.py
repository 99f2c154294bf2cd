import random
from uuid import uuid4

import pytest
from carma.domain import ReconstructionCalibration, calibration_id
from carma.domain.calibration import MIN_SAMPLE, monotone_fit, read_off
from hypothesis import given
from hypothesis import strategies as st

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def opened():
    return ReconstructionCalibration(namespace="ns", method="semantic-blend")


def kinds(aggregate):
    return [type(e).__name__ for e in aggregate.collect_events()]


@given(st.lists(st.tuples(unit, unit), min_size=1, max_size=120))
def test_the_fit_never_falls_and_reads_within_the_measured_recalls(points):
    curve = monotone_fit(points)
    levels = [r for _, r in curve]
    assert levels == sorted(levels)
    recalls = [r for _, r in points]
    assert min(recalls) - 1e-6 <= levels[0] and levels[-1] <= max(recalls) + 1e-6
    read = [read_off(curve, f) for f, _ in sorted(points)]
    assert read == sorted(read)
    assert max(read) <= levels[-1] + 1e-4
    # Within the fitted range the reading is among the levels; below it, it falls toward 0.
    assert all(levels[0] - 1e-4 <= read_off(curve, f) for f, _ in points if f >= curve[0][0])
    assert min(read) >= 0.0


def test_the_fit_pools_blocks_reads_flat_above_and_carries_its_slope_down_to_the_lowest():
    rng = random.Random(0)
    points = [
        (f, min(1.0, max(0.0, 0.8 * f - 0.2 + rng.uniform(-0.1, 0.1))))
        for f in (rng.uniform(0.5, 1.0) for _ in range(100))
    ]
    curve = monotone_fit(points)
    assert 2 <= len(curve) <= 10  # at least 10 points a block
    mean = sum(r for _, r in points) / len(points)
    fitted = sum(read_off(curve, f) for f, _ in points) / len(points)
    assert abs(fitted - mean) < 0.02
    assert read_off(curve, 1.0) == round(curve[-1][1], 4)
    # Between the lowest fidelity measured and the lowest block's mean, the overall slope
    # (about 0.8 here) carries on down; below the lowest measured, nothing is promised.
    lowest = min(f for f, _ in points)
    slope = (curve[-1][1] - curve[0][1]) / (curve[-1][0] - curve[0][0])
    between = (lowest + curve[0][0]) / 2
    assert read_off(curve, between, lowest) == pytest.approx(
        curve[0][1] - (curve[0][0] - between) * slope, abs=1e-3
    )
    assert read_off(curve, between, lowest) < read_off(curve, curve[0][0], lowest)
    assert read_off(curve, lowest - 0.05, lowest) is None
    assert read_off(curve, 0.0, lowest) is None
    assert read_off(curve, 0.95, lowest) > read_off(curve, 0.6, lowest)


def test_a_calibration_promises_nothing_below_the_fidelities_it_measured():
    """The demo's smallest namespaces said 26-38% where 6-15% came back: read off below the
    calibrated range. Now such a body's expected recall is unknown."""
    c = opened()
    sample = [str(i) for i in range(MIN_SAMPLE)]
    c.start(sample, 30, {}, None)
    c.measure(sample, [[0.80 + i / 200, 0.3 + i / 100, 0.2, 0] for i in range(20)], None)
    assert c.complete(None)
    assert c.summary["fidelity_range"] == [0.8, 0.895]
    assert c.expected_recall(0.85) is not None and c.expected_recall(0.799) is not None
    assert c.expected_recall(0.70) is None


def test_a_calibration_records_its_sample_its_points_and_then_its_fit():
    c = opened()
    assert c.id == calibration_id("ns", "semantic-blend")
    sample = [uuid4().hex for _ in range(MIN_SAMPLE)]
    c.start(sample, exact_fragments=30, reconstructor={"method": "semantic-blend"}, cycle_id=None)
    assert c.in_progress and c.pending() == sample
    c.measure(sample[:10], [[0.8, 0.4, 0.3, 0]] * 10, None)
    assert not c.complete(None)  # ten fragments are still to be measured
    c.measure(sample[10:], [[0.9, 0.6, 0.5, 0]] * 10, None)
    assert c.complete(None) and not c.in_progress
    assert c.summary["mean_recall"] == 0.5 and c.calibrated_size == 30
    assert c.expected_recall(0.95) == 0.6 and c.expected_recall(0.8) == 0.4
    assert kinds(c) == [
        "CalibrationOpened",
        "CalibrationStarted",
        "CalibrationSampled",
        "CalibrationSampled",
        "ReconstructionCalibrated",
    ]


def test_a_namespace_too_small_is_declined_once_and_recalibrated_when_grown_by_half():
    c = opened()
    assert not c.due(MIN_SAMPLE - 1)
    assert c.decline(5, None) is True and c.decline(6, None) is False
    assert c.declined == {"exact_fragments": 5, "needed": MIN_SAMPLE}
    assert c.expected_recall(0.9) is None
    with pytest.raises(ValueError):
        c.start(["a"] * (MIN_SAMPLE - 1), 19, {}, None)
    sample = [str(i) for i in range(MIN_SAMPLE)]
    c.start(sample, 40, {}, None)
    c.measure(sample, [[0.5 + i / 100, 0.3, 0.2, 0] for i in range(MIN_SAMPLE)], None)
    assert c.complete(None) and c.declined is None
    assert not c.due(59) and c.due(60)  # 40 * 1.5


def test_bad_points_are_refused_and_a_shrunken_sample_is_declined_not_guessed():
    c = opened()
    sample = [str(i) for i in range(MIN_SAMPLE)]
    c.start(sample, 25, {}, None)
    with pytest.raises(ValueError):
        c.measure(sample[:1], [[1.2, 0.5, 0.5, 0]], None)
    with pytest.raises(ValueError):
        c.measure(sample[:1], [[0.5, 0.5, 0.5]], None)  # no stage
    with pytest.raises(ValueError):
        c.measure(sample[:1], [[0.5, 0.5, 0.5, 0.5]], None)  # a stage is a whole number
    # Every sampled fragment was deleted meanwhile: no points, no fit.
    c.measure(sample, [], None)
    assert c.complete(None) and c.curve is None and c.declined is not None
    assert not c.in_progress


def test_a_refined_fragment_reads_its_own_stage_curve():
    """Refinement buys fidelity faster than words: a body refined up to a fidelity holds
    fewer of them than one that reached it at the first attempt, so each stage has a curve."""
    c = opened()
    sample = [str(i) for i in range(MIN_SAMPLE)]
    c.start(sample, 30, {}, None)
    hard = [[0.80, 0.3, 0.2, 0]] * 10 + [[0.95, 0.35, 0.25, 1]] * 10  # refined up to 0.95
    easy = [[0.94, 0.8, 0.7, 0]] * 10  # good from the first attempt
    c.measure(sample, hard + easy, None)
    assert c.complete(None)
    assert c.summary["points_per_stage"] == [20, 10]
    pooled = read_off(c.curve, 0.95)  # first attempts and refinements in one curve
    assert c.expected_recall(0.95, refinements=1) == 0.35 < pooled
    assert c.expected_recall(0.94, refinements=0) == 0.8
    assert c.expected_recall(0.95, refinements=4) == 0.35  # beyond the stages measured


def measured_elsewhere(source="shipped public corpus"):
    """A calibration fitted on another store's fragments, as the shipped one is."""
    other = ReconstructionCalibration(namespace="(shipped)", method="semantic-blend")
    sample = [str(i) for i in range(MIN_SAMPLE)]
    other.start(sample, 900, {"method": "semantic-blend"}, None)
    other.measure(sample, [[0.6 + i / 100, 0.2 + i / 50, 0.2, 0] for i in range(20)], None)
    assert other.complete(None)
    return {
        "curve": other.curve,
        "curves": other.curves,
        "summary": {**other.summary, "source": source},
    }


def test_an_adopted_calibration_says_where_it_was_measured_and_leaves_the_namespace_due():
    c = opened()
    assert c.source == "namespace"
    with pytest.raises(ValueError):  # a calibration from elsewhere must say where
        c.adopt({**measured_elsewhere(), "summary": {"fidelity_range": [0.6, 0.79]}}, None)
    assert c.adopt(measured_elsewhere(), None) is True
    assert c.source == "shipped public corpus" and c.calibrated_size == 0
    assert c.expected_recall(0.75) is not None
    assert c.expected_recall(0.5) is None  # below what it measured: still nothing promised
    assert c.adopt(measured_elsewhere(), None) is False  # it has a curve now
    # Too small for its own: it keeps the adopted one. Big enough: its own is due.
    assert not c.due(MIN_SAMPLE - 1) and c.due(MIN_SAMPLE)
    sample = [str(i) for i in range(MIN_SAMPLE)]
    c.start(sample, MIN_SAMPLE, {}, None)
    assert c.adopt(measured_elsewhere(), None) is False  # never over a calibration under way
    assert c.expected_recall(0.75) is not None  # the adopted curve serves meanwhile
    c.measure(sample, [[0.7 + i / 100, 0.5, 0.4, 0] for i in range(MIN_SAMPLE)], None)
    assert c.complete(None)
    assert c.source == "namespace" and c.expected_recall(0.75) == 0.5
    assert kinds(c)[1:3] == ["ReconstructionCalibrated", "CalibrationStarted"]
