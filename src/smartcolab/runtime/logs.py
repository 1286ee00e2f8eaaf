"""Server logs: readable lines for people, or one JSON object per line for machines.

Fields passed with ``extra={...}`` (job_id, session, client, status, duration_s)
become keys of a JSON line, or ``key=value`` after a readable line.  ``smartcolab
serve`` writes readable lines to a terminal and JSON lines otherwise (or as asked);
a notebook's serving cell gets readable lines on stdout (Colab paints stderr red).  The secret never reaches a logger: it is printed once on
the terminal by the banner and nowhere else.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class PlainFormatter(logging.Formatter):
    """``14:05:09 INFO  job started  job_id=cli-1a2b session=main`` (UTC time)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items()
                  if k not in _STANDARD and not k.startswith("_") and v is not None]
        return line + ("  " + " ".join(extras) if extras else "")


def configure_logging(*, json_lines: bool = True, level: int = logging.INFO,
                      stream: TextIO | None = None) -> None:
    """Send smartcolab's and uvicorn's logs to ``stream`` (stderr); idempotent."""
    root = logging.getLogger("smartcolab")
    if any(getattr(h, "_smartcolab", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._smartcolab = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonLineFormatter() if json_lines else PlainFormatter())
    logging.Formatter.converter = time.gmtime
    for name in ("smartcolab", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
