"""Read models rebuilt from the log: the fragment cache, the vector index, the health ledger.

Each records the last log position it applied, so that catching up incrementally and
rebuilding from position zero give the same state.
"""

from carma.projections.cache import CachedFragment, FragmentCache
from carma.projections.index import VectorIndex, faiss_id
from carma.projections.ledger import HealthLedger
from carma.projections.runner import Projection, ProjectionRunner

__all__ = [
    "CachedFragment",
    "FragmentCache",
    "HealthLedger",
    "Projection",
    "ProjectionRunner",
    "VectorIndex",
    "faiss_id",
]
