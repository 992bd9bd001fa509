"""Logging to stdout: one line per event, the job id on every job-related line.

Job-related code logs with ``extra={"job_id": ...}``; access-log lines of job
URLs get the id from the path. ``text`` is for people, ``json`` (one object
per line) for log collectors.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_JOB_PATH = re.compile(r"/api/v1/(?:jobs|shared)/([A-Za-z0-9_-]{8,64})")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_FIELDS = ("job_id", "owner", "status", "webhook_id", "batch_id")


class JobIdFilter(logging.Filter):
    """Fills ``record.job_id`` from a job URL in an access-log line when missing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            match = _JOB_PATH.search(_safe_message(record))
            record.job_id = match.group(1) if match else None
        return True


class TextFormatter(logging.Formatter):
    """``2025-01-01T12:00:00.123Z INFO studio.jobs job=abc message``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"{stamp}.{int(record.msecs):03d}Z", record.levelname, record.name]
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                parts.append(f"{name.removesuffix('_id')}={value}")
        parts.append(_safe_message(record).replace("\n", " | "))
        line = " ".join(parts)
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, job_id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _safe_message(record),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                data[key] = value if _jsonable(value) else repr(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def configure_logging(fmt: str = "text", level: str = "info") -> logging.Handler:
    """Send all logs (ours, the scheduler's, uvicorn's) to stdout in one format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for noisy in ("httpx", "httpcore", "asyncio", "multipart", "python_multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def _safe_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string must not lose the line
        return str(record.msg)


def _jsonable(value) -> bool:
    return isinstance(value, str | int | float | bool | list | dict)
