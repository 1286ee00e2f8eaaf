"""Structured logs: one JSON object per line on stderr.

Fields passed with ``extra={...}`` (job_id, session, client, status, duration_s)
become keys of the line.  The secret never reaches a logger: it is printed once on
the terminal by the banner and nowhere else.
"""

from __future__ import annotations

import json
import logging
import sys
import time

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


def configure_logging(*, json_lines: bool = True, level: int = logging.INFO) -> None:
    """Send smartcolab's and uvicorn's logs to stderr; idempotent."""
    root = logging.getLogger("smartcolab")
    if any(getattr(h, "_smartcolab", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._smartcolab = True  # type: ignore[attr-defined]
    if json_lines:
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.Formatter.converter = time.gmtime
    for name in ("smartcolab", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
