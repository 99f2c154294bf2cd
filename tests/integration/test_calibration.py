"""Calibrated expected recall: what a reconstruction is likely to hold of the original.

Real bodies are destroyed in the log (bytes flipped in the SQLite file, the cache file
deleted), rebuilt approximately, and the store's own calibration, recorded in the log, says
how much of each rebuilt text is likely real, or that its namespace is too small to say.
"""

import json

import pytest
from carma.domain import InvalidInput, fragment_uuid
from carma.domain.calibration import (
    FIDELITY_SLACK,
    MIN_SAMPLE,
    curve_for,
    lowest_measured,
    read_off,
)
from click.testing import CliRunner

import carma
from carma.cli import cli
from carma.cli.render import calibration_text
from carma.demo.corpus import corpus
from tests.integration.test_log_damage import flip_event

BIG, TINY = 42, 6
VICTIMS = ["b1", "b7", "b20"]


def small_budgets(mem):
    """The healer's and the calibration's budgets, shrunk to keep the test quick (the real
    budgets are measured in `carma bench reconstruct`)."""
    mem.dreamer.healer.reconstruct_evaluations = 96
    mem.dreamer.healer.refine_evaluations = 48
    mem.dreamer.calibrator.sample_size = MIN_SAMPLE
    mem.dreamer.calibrator.refinements = 1
    return mem


def destroy(home, mem_factory, keys):
    for key in keys:
        flip_event(home, key)
    mem = mem_factory()
    for key in keys:
        mem.cache.path_of(fragment_uuid(key)).unlink()
    return small_budgets(mem)


@pytest.fixture
def texts():
    return corpus(BIG + TINY + 30)


@pytest.fixture
def damaged(home, embedder, texts):
    """A namespace big enough to calibrate and one too small, each with destroyed bodies."""
    with carma.open(home, embedder=embedder) as mem:
        mem.add_many(
            [{"text": t, "id": f"b{i}", "namespace": "big"} for i, t in enumerate(texts[:BIG])]
        )
        mem.add_many(
            [
                {"text": t, "id": f"t{i}", "namespace": "tiny"}
                for i, t in enumerate(texts[BIG : BIG + TINY])
            ]
        )
    mem = destroy(home, lambda: carma.open(home, embedder=embedder), [*VICTIMS, "t2"])
    yield mem
    mem.close()


def events(mem, kind):
    return [e for e in mem.log_events(kinds=[kind])]


def expected(mem, calibrated, key):
    """A fragment's expected recall as its calibration event says: read at its fidelity on
    the curve of its refinement stage."""
    fragment = mem.log.fragment(key)
    curve = curve_for(calibrated["curve"], calibrated["curves"], fragment.refinements)
    lowest = lowest_measured(calibrated["summary"], curve, fragment.refinements)
    return read_off(curve, fragment.fidelity, lowest)


def test_a_dream_calibrates_where_reconstructions_are_and_each_says_what_to_expect(damaged, texts):
    mem = damaged
    report = mem.dream()
    assert report["repaired"]["log-body/semantic-blend"] == 4
    assert report["calibration"]["big"]["status"] == "calibrated"
    assert report["calibration"]["big"]["fragments"] == MIN_SAMPLE
    assert report["calibration"]["tiny"] == {
        "status": "too-small",
        "exact_fragments": TINY - 1,
        "needed": MIN_SAMPLE,
    }
    # In the log, for the audit trail: the sample, its points, the fit; and the refusal.
    (calibrated,) = events(mem, "ReconstructionCalibrated")
    curve = calibrated["data"]["curve"]
    assert [r for _, r in curve] == sorted(r for _, r in curve)
    (declined,) = events(mem, "CalibrationDeclined")
    assert declined["data"]["exact_fragments"] == TINY - 1
    sampled = events(mem, "CalibrationSampled")
    measured = [u for e in sampled for u in e["data"]["fragments"]]
    assert len(measured) == len(set(measured)) == MIN_SAMPLE
    assert not {fragment_uuid(k).hex for k in VICTIMS} & set(measured)  # never a victim
    points = [p for e in sampled for p in e["data"]["points"]]
    assert len(points) >= MIN_SAMPLE
    # The hidden fragment is never its own neighbour: no attempt gets its text back whole.
    assert all(fidelity < 0.9999 for fidelity, *_ in points)
    # Each point says which attempt it was: the first rebuild (0) or a refinement of it.
    assert {stage for *_, stage in points} <= set(range(4)) and points[0][3] == 0
    # Numbers only: no text of any fragment is in a calibration's events.
    logged = json.dumps([e["data"] for e in sampled + [calibrated]])
    assert not any(t[:30] in logged for t in texts[:BIG])

    for key in VICTIMS:
        record = mem.get(key)
        assert record.status == "approximate"
        assert record.expected_recall == expected(mem, calibrated["data"], key)
        assert 0.0 <= record.expected_recall <= 1.0
    tiny = mem.get("t2")
    assert tiny.status == "approximate" and tiny.expected_recall is None

    hits = mem.search(mem.get("b7").text, k=3, namespace="big")
    assert any(h.id == "b7" and h.expected_recall is not None for h in hits)
    exported = {r.id: r for r in mem.export()}
    assert exported["b1"].expected_recall == mem.get("b1").expected_recall
    assert exported["b2"].expected_recall is None  # healthy: nothing to expect

    health = mem.health()
    assert health["expected_recall"]["calibrated"] == 3
    assert health["expected_recall"]["not_calibrated"] == 1
    assert 0.0 <= health["expected_recall"]["mean"] <= 1.0
    assert health["calibration"]["big"]["semantic-blend"]["status"] == "calibrated"
    assert health["calibration"]["tiny"]["semantic-blend"] == {
        "status": "declined",
        "method": "semantic-blend",
        "too_small": {"exact_fragments": TINY - 1, "needed": MIN_SAMPLE},
    }

    again = mem.dream()  # current: nothing recalibrated, and the refusal is not repeated
    assert "big" not in again["calibration"]
    assert len(events(mem, "ReconstructionCalibrated")) == 1
    assert len(events(mem, "CalibrationDeclined")) == 1


def test_a_calibration_resumes_across_cycles_and_restarts(damaged, home, embedder):
    mem = damaged
    mem.dreamer.calibrate_budget_s = 0  # a cycle then measures one sample fragment
    first = mem.dream()["calibration"]["big"]
    assert first["status"] == "calibrating" and 0 < first["measured"] < MIN_SAMPLE
    assert mem.get("b1").expected_recall is None  # not calibrated yet: no guess
    assert mem.health()["calibration"]["big"]["semantic-blend"]["progress"] == {
        "measured": first["measured"],
        "of": MIN_SAMPLE,
    }
    mem.close()
    mem = small_budgets(carma.open(home, embedder=embedder))  # progress is in the log
    mem.dreamer.calibrate_budget_s = 0
    try:
        measured = first["measured"]
        for _ in range(MIN_SAMPLE):
            outcome = mem.dream()["calibration"].get("big", {"status": "current"})
            if outcome["status"] != "calibrating":
                break
            assert outcome["measured"] > measured  # every cycle gets further
            measured = outcome["measured"]
        assert outcome["status"] == "calibrated"
        sampled = [u for e in events(mem, "CalibrationSampled") for u in e["data"]["fragments"]]
        assert len(sampled) == len(set(sampled)) == MIN_SAMPLE  # none measured twice
        assert len(events(mem, "CalibrationStarted")) == 1
        assert mem.get("b1").expected_recall is not None
    finally:
        mem.close()


def test_a_namespace_grown_by_half_is_recalibrated_and_a_rebuild_agrees(damaged, texts):
    mem = damaged
    mem.dream()
    before = {k: mem.get(k).expected_recall for k in VICTIMS}
    mem.add_many(
        [
            {"text": t, "id": f"n{i}", "namespace": "big"}
            for i, t in enumerate(texts[BIG + TINY : BIG + TINY + 30])
        ]
    )
    report = mem.dream()  # 39 exact fragments grew to 69: at least half again
    assert report["calibration"]["big"]["status"] == "calibrated"
    assert report["calibration"]["big"]["exact_fragments"] == 69
    latest = events(mem, "ReconstructionCalibrated")[-1]["data"]
    after = {k: mem.get(k).expected_recall for k in VICTIMS}
    assert after == {k: expected(mem, latest, k) for k in VICTIMS}
    assert set(before) == set(after)
    rows = {k: mem.ledger.row(k)["expected_recall"] for k in VICTIMS}
    mem.rebuild()  # the ledger is a projection of the log: the same numbers again
    assert {k: mem.ledger.row(k)["expected_recall"] for k in VICTIMS} == rows
    assert mem.health()["calibration"]["big"]["semantic-blend"]["exact_fragments"] == 69


def test_calibrate_on_request_and_its_errors(damaged):
    mem = damaged
    done = mem.calibrate("big")
    assert done["big"]["status"] == "calibrated"
    assert mem.calibrate("big")["big"]["status"] == "current"
    assert mem.calibrate("big", force=True)["big"]["status"] == "calibrated"
    assert mem.calibrate("tiny")["tiny"]["status"] == "too-small"
    with pytest.raises(InvalidInput):
        mem.calibrate("nowhere")
    with pytest.raises(InvalidInput):
        mem.calibrate("bad namespace!")
    assert len(events(mem, "ReconstructionCalibrated")) == 2


def test_the_cli_shows_both_numbers_and_a_namespace_too_small(damaged, home):
    damaged.dream()
    damaged.close()
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli, [*args, "--home", str(home)])
        assert result.exit_code == 0, result.output
        return result.stdout

    got = json.loads(run("get", "b1", "--json"))
    assert got["status"] == "approximate" and 0 < got["fidelity"] < 1
    assert 0 <= got["expected_recall"] <= 1
    shown = run("get", "b1")
    assert (
        f"≈ approximate · fidelity {got['fidelity']:.2f} · "
        f"~{got['expected_recall']:.0%} of words expected" in shown
    )
    assert "share of words unknown (namespace 'tiny' is" in run("get", "t2")
    small = json.loads(run("calibrate", "--namespace", "tiny", "--json"))
    assert small == {
        "tiny": {"status": "too-small", "exact_fragments": TINY - 1, "needed": MIN_SAMPLE}
    }
    assert "too small to calibrate (5 exact fragments; 20 needed)" in run(
        "calibrate", "--namespace", "tiny"
    )
    table = run("health")
    assert "expected recall" in table and "too small to calibrate" in table
    lines = [json.loads(line) for line in run("export").splitlines()]
    assert {r["id"]: r["expected_recall"] for r in lines}["b1"] == got["expected_recall"]
    missing = runner.invoke(cli, ["calibrate", "--namespace", "nowhere", "--home", str(home)])
    assert missing.exit_code == 2 and "nowhere" in missing.output
    assert "calibration tiny: too small to calibrate" in run("dream")


def test_the_audit_log_shows_the_calibration(damaged, home):
    damaged.dream()
    damaged.close()
    result = CliRunner().invoke(
        cli,
        [
            "log",
            "--kind",
            "ReconstructionCalibrated",
            "--kind",
            "CalibrationDeclined",
            "--json",
            "--home",
            str(home),
        ],
    )
    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["kind"] for e in entries] == ["ReconstructionCalibrated", "CalibrationDeclined"]
    summary = entries[0]["data"]["summary"]
    assert summary["fragments"] == MIN_SAMPLE
    assert summary["reconstructor"]["method"] == "semantic-blend"
    assert set(summary) >= {"mean_fidelity", "mean_recall", "mean_content_recall"}


def test_a_reconstructor_is_chosen_by_name_and_a_wrong_choice_changes_nothing(
    tmp_path, embedder, monkeypatch
):
    home = tmp_path / "fresh"
    with pytest.raises(InvalidInput, match="unknown reconstructor 'magic'"):
        carma.open(home, embedder=embedder, reconstructor="magic")
    monkeypatch.setenv("CARMA_RECONSTRUCTOR", "magic")
    with pytest.raises(InvalidInput, match="unknown reconstructor"):
        carma.open(home, embedder=embedder)
    assert not home.exists()
    monkeypatch.delenv("CARMA_RECONSTRUCTOR")
    with pytest.raises(InvalidInput, match="needs a transformer"):
        carma.open(home, embedder=embedder, reconstructor="gradient-swap")
    assert not home.exists()
    with carma.open(home, embedder=embedder) as mem:
        assert mem.dreamer.healer.reconstructor.method == "semantic-blend"


def test_a_body_rebuilt_below_the_calibrated_range_says_its_recall_is_unknown(damaged):
    """Expected recall is read only where the calibration measured: a body rebuilt to a
    fidelity below every one its calibration saw is unknown, and says why (in `get`, the CLI
    and `health`), instead of a figure the store never measured."""
    mem = damaged
    mem.dreamer.calibrate_budget_s = 0  # the rebuilds only: the calibration is recorded below
    mem.dream()
    rebuilt = [k for k in VICTIMS if mem.get(k).status == "approximate"]
    assert rebuilt
    method = mem.log.fragment(rebuilt[0]).reconstructed_by
    calibration = mem.log.calibration("big", method)
    sample = [f"b{i}" for i in range(21, 21 + MIN_SAMPLE)]
    calibration.start(sample, BIG, {}, None)
    # Measured only at fidelities no rebuilt body reached.
    calibration.measure(
        sample, [[0.999 - i / 10_000, 0.9, 0.8, 0] for i in range(len(sample))], None
    )
    assert calibration.complete(None)
    mem.log.record(calibration)
    for key in rebuilt:
        got = mem.get(key)
        assert got.fidelity < 0.997 and got.expected_recall is None
        assert "below the calibrated range" in got.expected_recall_unknown
    assert mem.health()["expected_recall"]["below_range"] == len(rebuilt)
    tiny = mem.get("t2")
    if tiny.status == "approximate":  # its namespace has no curve: it says so
        assert tiny.expected_recall is None and "namespace 'tiny'" in tiny.expected_recall_unknown


def many_and_few(home, embedder, *, few=TINY, many=25):
    """Namespace "many" with three destroyed bodies, "few" with one, "tiny" with one."""
    texts = corpus(many * 2 + few)
    with carma.open(home, embedder=embedder) as mem:
        for ns, start, size in (("many", 0, many), ("few", many, many), ("tiny", 2 * many, few)):
            mem.add_many(
                [
                    {"text": t, "id": f"{ns}{i}", "namespace": ns}
                    for i, t in enumerate(texts[start : start + size])
                ]
            )
    return destroy(
        home,
        lambda: carma.open(home, embedder=embedder),
        ["many1", "many2", "many3", "few1", "tiny1"],
    )


def test_a_cycles_calibration_budget_goes_first_where_most_approximate_bodies_are(home, embedder):
    """Spread over every namespace a fragment at a time, a budget calibrated none of them in
    a store of many small namespaces; now it is spent on one at a time, most bodies first."""
    mem = many_and_few(home, embedder)
    try:
        mem.dreamer.calibrate_budget_s = 0.0  # the least: one sample fragment a cycle
        report = mem.dream()
        assert mem.dreamer.calibrator.wanted() == ["many", "few", "tiny"]
        assert report["calibration"]["many"] == {"status": "calibrating", "measured": 1, "of": 20}
        assert report["calibration"]["few"]["status"] == "waiting"
        assert report["calibration"]["tiny"]["status"] == "too-small"  # said at no cost
        started = {e["data"]["sample"][0] for e in events(mem, "CalibrationStarted")}
        assert len(started) == 1  # only "many" was started
        mem.dreamer.calibrate_budget_s = 600.0
        report = mem.dream()  # "many" is finished first, then "few" is calibrated
        assert report["calibration"]["many"]["status"] == "calibrated"
        assert report["calibration"]["few"]["status"] == "calibrated"
        assert mem.get("many1").expected_recall_source == "namespace"
    finally:
        mem.close()


def test_a_namespace_with_no_calibration_of_its_own_reads_the_shipped_one_labelled(
    tmp_path, home, embedder
):
    """The shipped calibration (measured as `carma bench reconstruct --setting shipped` does,
    here with the test embedder) stands in wherever a namespace has none: too small for its
    own, or not measured yet; labelled as such; replaced by the namespace's own once that is
    measured. One that describes other budgets is never adopted."""
    from carma.bench.reconstruct import SHIPPED_SOURCE, shipped_calibration

    shipped = shipped_calibration(
        workdir=tmp_path / "shipped", embedder=embedder, sample_size=MIN_SAMPLE
    )
    assert shipped["method"] == "semantic-blend" and shipped["model"] == embedder.name
    assert shipped["summary"]["source"] == SHIPPED_SOURCE
    mem = many_and_few(home, embedder)
    try:
        calibrator = mem.dreamer.calibrator
        # The test's budgets are smaller than the product's: a calibration measured with the
        # product's describes another reconstructor, and is not adopted.
        calibrator._shipped = lambda: shipped
        assert calibrator.shipped is None
        mem.dreamer.calibrate_budget_s = 0.0
        mem.dream()
        assert mem.get("tiny1").expected_recall is None
        # Measured with these budgets, it applies.
        mem.dreamer.healer.reconstruct_evaluations = 288
        mem.dreamer.healer.refine_evaluations = 192
        calibrator.refinements = 3
        assert calibrator.shipped == shipped
        report = mem.dream()
        assert report["calibration"]["tiny"]["status"] == "adopted"
        few1 = mem.get("few1")
        assert few1.expected_recall is not None
        assert few1.expected_recall_source == SHIPPED_SOURCE
        # Below the fidelities the shipped calibration measured, it promises nothing either.
        tiny1 = mem.get("tiny1")
        stage = mem.log.fragment("tiny1").refinements
        lowest = lowest_measured(shipped["summary"], [], stage)
        assert (tiny1.expected_recall is None) == (tiny1.fidelity < lowest - FIDELITY_SLACK)
        assert tiny1.expected_recall is not None or "below the calibrated range" in (
            tiny1.expected_recall_unknown
        )
        health = mem.health()["calibration"]
        assert health["tiny"]["semantic-blend"]["source"] == SHIPPED_SOURCE
        said = calibration_text(health["tiny"]["semantic-blend"])  # as `carma health` says it
        assert said.startswith("reads the calibration measured on the shipped public corpus")
        assert health["few"]["semantic-blend"]["exact_fragments"] == 0  # none of its own
        # The namespace's own calibration, once measured, replaces it.
        assert mem.calibrate("few")["few"]["status"] == "calibrated"
        assert mem.get("few1").expected_recall_source in ("namespace", None)
        assert mem.health()["calibration"]["few"]["semantic-blend"]["source"] == "namespace"
        assert mem.health()["calibration"]["tiny"]["semantic-blend"]["source"] == SHIPPED_SOURCE
    finally:
        mem.close()
