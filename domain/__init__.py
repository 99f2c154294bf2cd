"""CARMA's domain: fragments, their events, and the rules they obey.

This package knows no infrastructure: no database, no vector index, no model.
"""

from carma.domain.calibration import ReconstructionCalibration, calibration_id
from carma.domain.errors import (
    CarmaError,
    ConflictError,
    CorruptEvent,
    EmbedderMismatch,
    FragmentGone,
    FragmentNotFound,
    InvalidInput,
    LogLost,
    StorageError,
)
from carma.domain.fragment import (
    COPIES,
    FAULTS,
    SOLE_REPLICA,
    Fragment,
    Replica,
    StoreProfile,
    copy_kind,
    dashed_uuid,
    fragment_uuid,
)
from carma.domain.healing import DreamCycle, LogHistory, VectorIndexCopy, index_copy_id
from carma.domain.values import (
    DIMENSION_MAX,
    KEY_MAX_CHARS,
    METADATA_MAX_BYTES,
    NAMESPACE_PATTERN,
    TEXT_MAX_CHARS,
    Draft,
    Metadata,
    content_hash,
    validate_embedding,
    validate_key,
    validate_metadata,
    validate_namespace,
    validate_text,
)

__all__ = [
    "COPIES",
    "FAULTS",
    "DreamCycle",
    "Replica",
    "SOLE_REPLICA",
    "copy_kind",
    "index_copy_id",
    "ReconstructionCalibration",
    "calibration_id",
    "VectorIndexCopy",
    "DIMENSION_MAX",
    "KEY_MAX_CHARS",
    "METADATA_MAX_BYTES",
    "NAMESPACE_PATTERN",
    "TEXT_MAX_CHARS",
    "CarmaError",
    "ConflictError",
    "CorruptEvent",
    "Draft",
    "EmbedderMismatch",
    "Fragment",
    "FragmentGone",
    "FragmentNotFound",
    "InvalidInput",
    "LogHistory",
    "LogLost",
    "Metadata",
    "StorageError",
    "StoreProfile",
    "content_hash",
    "dashed_uuid",
    "fragment_uuid",
    "validate_embedding",
    "validate_key",
    "validate_metadata",
    "validate_namespace",
    "validate_text",
]
