import random
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ReconstructionCalibration, calibration_id
from domain.calibration import MIN_SAMPLE, monotone_fit, read_off

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
    assert min(read) >= levels[0] - 1e-4 and max(read) <= levels[-1] + 1e-4


def test_the_fit_pools_blocks_and_reads_flat_beyond_its_ends():
    rng = random.Random(0)
    points = [(f, min(1.0, max(0.0, 0.8 * f - 0.2 + rng.uniform(-0.1, 0.1))))
              for f in (rng.uniform(0.5, 1.0) for _ in range(100))]
    curve = monotone_fit(points)
    assert 2 <= len(curve) <= 10  # at least 10 points a block
    mean = sum(r for _, r in points) / len(points)
    fitted = sum(read_off(curve, f) for f, _ in points) / len(points)
    assert abs(fitted - mean) < 0.02
    assert read_off(curve, 0.0) == round(curve[0][1], 4)
    assert read_off(curve, 1.0) == round(curve[-1][1], 4)
    assert read_off(curve, 0.95) > read_off(curve, 0.6)


def test_a_calibration_records_its_sample_its_points_and_then_its_fit():
    c = opened()
    assert c.id == calibration_id("ns", "semantic-blend")
    sample = [uuid4().hex for _ in range(MIN_SAMPLE)]
    c.start(sample, exact_fragments=30, reconstructor={"method": "semantic-blend"},
            cycle_id=None)
    assert c.in_progress and c.pending() == sample
    c.measure(sample[:10], [[0.8, 0.4, 0.3]] * 10, None)
    assert not c.complete(None)  # ten fragments are still to be measured
    c.measure(sample[10:], [[0.9, 0.6, 0.5]] * 10, None)
    assert c.complete(None) and not c.in_progress
    assert c.summary["mean_recall"] == 0.5 and c.calibrated_size == 30
    assert c.expected_recall(0.95) == 0.6 and c.expected_recall(0.7) == 0.4
    assert kinds(c) == ["CalibrationOpened", "CalibrationStarted", "CalibrationSampled",
                        "CalibrationSampled", "ReconstructionCalibrated"]


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
    c.measure(sample, [[0.5 + i / 100, 0.3, 0.2] for i in range(MIN_SAMPLE)], None)
    assert c.complete(None) and c.declined is None
    assert not c.due(59) and c.due(60)  # 40 * 1.5


def test_bad_points_are_refused_and_a_shrunken_sample_is_declined_not_guessed():
    c = opened()
    sample = [str(i) for i in range(MIN_SAMPLE)]
    c.start(sample, 25, {}, None)
    with pytest.raises(ValueError):
        c.measure(sample[:1], [[1.2, 0.5, 0.5]], None)
    with pytest.raises(ValueError):
        c.measure(sample[:1], [[0.5, 0.5]], None)
    # Every sampled fragment was deleted meanwhile: no points, no fit.
    c.measure(sample, [], None)
    assert c.complete(None) and c.curve is None and c.declined is not None
    assert not c.in_progress
