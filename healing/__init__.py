"""Healing: find lost or damaged copies (Scrubber), repair them (Healer), in dream cycles."""

from carma.healing.calibrator import Calibrator
from carma.healing.dreamer import Dreamer, DreamScheduler
from carma.healing.healer import Healer, HealingLog
from carma.healing.reconstructor import Reconstruction, Reconstructor
from carma.healing.scrubber import Finding, Scrubber, ScrubReport

__all__ = [
    "Calibrator",
    "DreamScheduler",
    "Dreamer",
    "Finding",
    "Healer",
    "HealingLog",
    "Reconstruction",
    "Reconstructor",
    "ScrubReport",
    "Scrubber",
]
