"""Logging to stdout: one line per event, the job id on every job-related line.

Job-related code logs with ``extra={"job_id": ...}``; access-log lines of job
URLs get the id from the path. ``text`` is for people, ``json`` (one object
per line) for log collectors.

Secrets never reach the log: share-link tokens (``/api/v1/shared/<token>``),
API keys (``fsk_…``), webhook secrets (``whsec_…``), ``Authorization`` and
``Cookie`` values, the owner cookie (``fs_owner=…``), Gradio's login cookie and
``token=``/``key=`` query parameters are replaced by ``[redacted]`` in every
line (uvicorn's access log included), exceptions and extras too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# Only job URLs: a share URL's path is a secret token, not a job id.
_JOB_PATH = re.compile(r"/api/v1/jobs/([A-Za-z0-9_-]{8,64})")
REDACTED = "[redacted]"
_SECRETS = (
    (re.compile(r"(/api/v1/shared/)[^\s?#\"']+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"\b(fsk_)[A-Za-z0-9_\-]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"\b(whsec_)[A-Za-z0-9+/=_\-]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)\b(bearer)(\s+)[^\s'\",;]+"), rf"\g<1>\g<2>{REDACTED}"),
    (re.compile(r"\b(Basic|Digest)(\s+)[A-Za-z0-9+/=._~\-]{8,}"), rf"\g<1>\g<2>{REDACTED}"),
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|set-cookie|cookie)(['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n]+"
        ),
        rf"\g<1>\g<2>{REDACTED}",
    ),
    (re.compile(r"(?i)\b(fs_owner|access-token[\w-]*)=[^;,&\s'\"]+"), rf"\g<1>={REDACTED}"),
    (
        re.compile(
            r"(?i)([?&](?:token|key|api_key|apikey|access_token|secret|signature)=)[^&#\s'\"]+"
        ),
        rf"\g<1>{REDACTED}",
    ),
)
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_FIELDS = ("job_id", "owner", "status", "webhook_id", "batch_id")


def redact(text: str) -> str:
    """``text`` with every secret the studio knows the shape of replaced by ``[redacted]``."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Redacts a record's message (arguments merged in) and its string extras in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = _safe_message(record)
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


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
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, job_id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(_safe_message(record)),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                value = value if _jsonable(value) else repr(value)
                data[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def configure_logging(fmt: str = "text", level: str = "info") -> logging.Handler:
    """Send all logs (ours, the scheduler's, uvicorn's) to stdout in one format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactFilter())
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
