"""The one error of ``harness ingest``: input that cannot be imported."""
from __future__ import annotations

from harness.core.errors import BadInput


class IngestError(BadInput):
    """Input that cannot be imported; ``str()`` is one line naming the path."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
