"""Healing: find lost or damaged copies (Scrubber), repair them (Healer), in dream cycles."""

from healing.calibrator import Calibrator
from healing.dreamer import Dreamer, DreamScheduler
from healing.healer import Healer, HealingLog
from healing.reconstructor import Reconstruction, Reconstructor
from healing.scrubber import Finding, Scrubber, ScrubReport

__all__ = ["Calibrator", "DreamScheduler", "Dreamer", "Finding", "Healer", "HealingLog", "Reconstruction", "Reconstructor", "ScrubReport", "Scrubber"]
