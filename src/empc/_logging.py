"""Log events as JSON lines, for journald and log shippers.

Twisted's own ``jsonFileLogObserver`` writes events that Twisted reads back
(each record starts with an RS byte, the level is a serialized constant, the
message is only its template); a log shipper wants one plain object per line
with the text already formatted. :class:`JSONLinesObserver` writes that.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import ILogObserver, LogEvent, formatEvent
from zope.interface import implementer

RESERVED = ("time", "level", "namespace", "message", "traceback")


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes each event to ``out`` as one JSON object and a newline.

    The object holds ``time`` (ISO 8601, UTC), ``level`` (``info``,
    ``warn``...), ``namespace``, ``message`` (the formatted text), the
    ``traceback`` of a logged failure, and the event's own fields. A field
    named like one of those keys is written as ``field_<name>``; a value that
    JSON cannot hold is written as its ``str()`` (a secret's shows no secret).
    Twisted's private ``log_*`` keys are left out.
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: LogEvent) -> None:
        self._out.write(event_as_json(event) + "\n")
        self._out.flush()


def stdout_observer() -> JSONLinesObserver:
    """JSON lines on standard output: the factory ``twistd --logger`` takes."""
    return JSONLinesObserver(sys.stdout)


def event_as_json(event: LogEvent) -> str:
    """``event`` as one line of JSON (see :class:`JSONLinesObserver`)."""
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0.0), UTC).isoformat(),
        "level": level.name if level is not None else None,
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if key.startswith("log_"):
            continue
        record[f"field_{key}" if key in RESERVED else key] = _jsonable(value)
    return json.dumps(record, ensure_ascii=False)


def _jsonable(value: object) -> object:
    """``value`` when JSON holds it as it is, else its text."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return str(value)
    return value
