"""The composition root for Lambda mode: settings → boto3 clients → adapters → ``Pipeline``.

The wiring is shared with the consumer (``service.runtime.composition.build_pipeline``); boto3 is imported
there, inside the function, so importing the handler module stays cheap and the clients are built once
per container, on the first invocation.
"""

from __future__ import annotations

from service.runtime.composition import build_pipeline

__all__ = ["build_pipeline"]
