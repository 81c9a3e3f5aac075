"""OpenTelemetry for the inventory services: a tracer provider whose spans go, one JSON line
each, to a file, written from inside the server process (each GMF worker) as each span ends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def tracer_provider(path: str) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(path, "a") as out:
                for span in spans:
                    out.write(json.dumps({"name": span.name, "kind": span.kind.name,
                                          "status": span.status.status_code.name,
                                          "attributes": dict(span.attributes or {})}) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    return provider
