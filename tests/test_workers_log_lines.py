"""Each worker's log lines say whose they are, in the text and the JSON format."""

from __future__ import annotations

import io
import logging
import os

import orjson

from orbiter.logs import TEXT_FORMAT, JsonFormatter
from orbiter.workers import _WorkerLines


def _line(formatter: logging.Formatter) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_WorkerLines(3, isinstance(formatter, JsonFormatter)))
    logger = logging.getLogger("orbiter.test_workers_log_lines")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("hello %s", "there")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().strip()


def test_json_lines_stay_json_with_worker_and_pid_fields() -> None:
    line = orjson.loads(_line(JsonFormatter()))
    assert line["message"] == "hello there"
    assert (line["worker"], line["pid"]) == (3, os.getpid())


def test_text_lines_begin_with_the_worker() -> None:
    assert f"[worker 3, pid {os.getpid()}] hello there" in _line(logging.Formatter(TEXT_FORMAT))
