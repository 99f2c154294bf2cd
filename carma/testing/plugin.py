"""The pytest plugin of `carma.testing` (entry point `pytest11`: installed with the package,
loaded by pytest). Its fixtures open throwaway stores; nothing is imported until one is used.

carma_embedder  the small deterministic embedder (32-d hashed words: no model, no download)
carma_store     a CARMA store in the test's own temporary folder, closed when the test ends
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def carma_embedder() -> Any:
    from carma.testing import small_embedder

    return small_embedder()


@pytest.fixture
def carma_store(tmp_path_factory: pytest.TempPathFactory, carma_embedder: Any) -> Iterator[Any]:
    import carma

    home = tmp_path_factory.mktemp("carma") / "home"
    with carma.open(home, embedder=carma_embedder) as memory:
        yield memory
