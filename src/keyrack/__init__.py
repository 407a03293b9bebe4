"""keyrack: API keys for organizations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from keyrack.service.verify import Verifier

__all__ = ["Verifier", "__version__"]


def __getattr__(name: str) -> Any:
    """`keyrack.Verifier` without importing SQLAlchemy and FastAPI on `import keyrack` (PEP 562)."""
    if name == "Verifier":
        from keyrack.service.verify import Verifier

        return Verifier
    raise AttributeError(f"module 'keyrack' has no attribute {name!r}")
