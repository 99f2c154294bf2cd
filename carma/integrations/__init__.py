"""Where agents meet CARMA: each module adapts the public API (`carma.open`, `Memory`) to a
framework, behind an optional extra, so the core install pulls none of them.

langchain  CarmaVectorStore, a LangChain `VectorStore` (`pip install 'carma[langchain]'`)
mcp        the MCP server behind `carma mcp` (`pip install 'carma[mcp]'`)
"""

from __future__ import annotations


def missing_extra(extra: str, exc: ImportError) -> ImportError:
    """The error a module raises when its extra is not installed: it names the extra."""
    return ImportError(
        f"this needs the {extra!r} extra, which is not installed ({exc.name or exc} is "
        f"missing): pip install 'carma[{extra}]'"
    )
