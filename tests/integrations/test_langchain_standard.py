"""LangChain's own standard tests for a vector store (langchain-tests), unmodified, sync and
async, each against an empty CARMA store on disk (a real log, index, cache and ledger)."""

from collections.abc import Iterator

import pytest
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

from carma.integrations.langchain import CarmaVectorStore


class TestCarmaVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path) -> Iterator[CarmaVectorStore]:  # type: ignore[override]
        store = CarmaVectorStore(embedding=self.get_embeddings(), path=tmp_path / "home")
        try:
            yield store
        finally:
            store.close()
