"""Stored topics are part of the log's format: each is inside its event's checksum and the
chain's MAC, and kind filters and the import allow-list use it. They stay as 0.1.0 wrote them
(when the domain was a top-level package), wherever the classes live now."""

import subprocess
import sys

from carma.domain import (
    DreamCycle,
    Fragment,
    LogHistory,
    ProjectionCopy,
    ReconstructionCalibration,
    StoreProfile,
    VectorIndexCopy,
)
from carma.domain.access import AccessKey
from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic, resolve_topic

from carma.log import EVENT_KINDS, EVENT_TOPICS

STORED = {
    "domain.fragment:Fragment",
    "domain.fragment:StoreProfile",
    "domain.healing:DreamCycle",
    "domain.healing:VectorIndexCopy",
    "domain.calibration:ReconstructionCalibration",
    "domain.fragment:Fragment.FragmentWritten",
    "domain.fragment:Fragment.FragmentRevised",
    "domain.fragment:Fragment.FragmentDeleted",
    "domain.fragment:Fragment.FragmentLost",
    "domain.fragment:Fragment.FragmentReconstructed",
    "domain.fragment:Fragment.EmbeddingKept",
    "domain.fragment:Fragment.FragmentForgotten",
    "domain.fragment:StoreProfile.StoreCreated",
    "domain.healing:VectorIndexCopy.IndexCopyTracked",
    "domain.healing:VectorIndexCopy.IndexLost",
    "domain.healing:VectorIndexCopy.IndexRebuilt",
    "domain.healing:DreamCycle.DreamCycleStarted",
    "domain.healing:DreamCycle.DreamCycleCompleted",
    "domain.healing:LogHistory",
    "domain.healing:LogHistory.HistoryLost",
    "domain.healing:ProjectionCopy",
    "domain.healing:ProjectionCopy.ProjectionCopyTracked",
    "domain.healing:ProjectionCopy.ProjectionLost",
    "domain.healing:ProjectionCopy.ProjectionRepaired",
    "domain.calibration:ReconstructionCalibration.CalibrationOpened",
    "domain.calibration:ReconstructionCalibration.CalibrationStarted",
    "domain.calibration:ReconstructionCalibration.CalibrationSampled",
    "domain.calibration:ReconstructionCalibration.ReconstructionCalibrated",
    "domain.calibration:ReconstructionCalibration.CalibrationDeclined",
    "domain.access:AccessKey",
    "domain.access:AccessKey.KeyIssued",
    "domain.access:AccessKey.KeyRevoked",
}
AGGREGATES = (
    AccessKey,
    Fragment,
    StoreProfile,
    DreamCycle,
    VectorIndexCopy,
    ReconstructionCalibration,
    LogHistory,
    ProjectionCopy,
)


def _written() -> set[str]:
    classes = [*AGGREGATES, *EVENT_KINDS.values()]
    return {get_topic(cls) for cls in classes}


def test_every_class_writes_its_frozen_topic():
    assert _written() == STORED
    assert EVENT_TOPICS == STORED - {get_topic(a) for a in AGGREGATES}


def test_every_event_class_of_an_aggregate_has_a_frozen_topic():
    # A subclass without its own TOPIC would silently write its parent's.
    for aggregate in AGGREGATES:
        for name, cls in vars(aggregate).items():
            if isinstance(cls, type) and issubclass(cls, Aggregate.Event) and name != "Event":
                topic = get_topic(cls)
                assert topic.startswith("domain.") and topic.endswith(":" + cls.__qualname__)


def test_stored_topics_resolve_in_a_fresh_process_with_no_top_level_domain():
    # The frozen names must resolve before any class was used: reading an old log first thing.
    code = (
        "import sys; import carma; from eventsourcing.utils import resolve_topic; "
        f"[resolve_topic(t) for t in {sorted(STORED)!r}]; "
        "print('domain' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # resolved to carma.domain, never importing `domain`


def test_a_stored_topic_resolves_to_the_class_that_wrote_it():
    for cls in [*AGGREGATES, *EVENT_KINDS.values()]:
        assert resolve_topic(get_topic(cls)) is cls
