"""orbiter's log lines: the text and JSON formats, and the structured event lines.

Every line is one record of the standard :mod:`logging` tree under ``orbiter``.
``[log] format = "text"`` writes ``time LEVEL logger: message``; ``"json"``
writes one JSON object per line with ``time``, ``level``, ``logger``,
``message`` and the record's fields (``event``, ``transport``, ``ip``, ...).

:class:`EventLog` writes the events of connections and channels under
``orbiter.events``, each with its fields in the record (for JSON) and as
``key=value`` in the message (for text): ``open`` and ``close`` at INFO;
``subscribe``, ``unsubscribe`` and ``publish`` at DEBUG (a publication's
data only with ``[log] payloads = true``) and ``fallback`` (a client that
reached this connection after other transports failed). Its ``info`` and ``debug`` flags
are read once, when it is made (the level does not change while serving):
call sites test the flag first (``if events.debug: events.published(...)``),
so a level that is off costs one attribute read and nothing is formatted.

:class:`Counters` are the node's counters of limit hits and refusals (``GET
/api/stats``); a refusal or a limit hit it counts is also a WARNING line under
``orbiter.node``, at most one per counter every :data:`WARNING_INTERVAL`
seconds (the next says how many were left unwritten), so that a flood costs
one line per interval. They also count the transport fallbacks clients report
(:attr:`Counters.fallbacks`, by the first transport tried and the one that
worked; ``/metrics`` only).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

import orjson

#: The logger of :class:`EventLog`'s lines.
EVENTS_LOGGER = "orbiter.events"
LEVELS = ("debug", "info", "warning")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The most characters of a publication's data a debug line shows.
MAX_PAYLOAD = 500
#: The logger of :class:`Counters`' lines.
NODE_LOGGER = "orbiter.node"
#: Seconds between two lines of one counter; the hits in between are only counted.
WARNING_INTERVAL = 10.0

#: A record's own attributes; anything else on it came as ``extra`` fields.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, fmt: str, stream: IO[str] | None = None) -> None:
    """Send orbiter's records (and aiohttp's) to ``stream`` (stderr) at ``level``, as
    ``fmt`` (``text`` or ``json``); replaces any handler set before."""
    if level not in LEVELS or fmt not in FORMATS:
        raise ValueError(f"log level {level!r} or format {fmt!r} is not one of {LEVELS}, {FORMATS}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def _text(fields: dict[str, Any]) -> str:
    """``key=value`` pairs; a value with a space, quote or ``=`` in it is JSON-quoted."""
    parts = []
    for key, value in fields.items():
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        if not shown or any(c in shown for c in ' "='):
            shown = orjson.dumps(shown).decode()
        parts.append(f"{key}={shown}")
    return " ".join(parts)


class EventLog:
    """The structured lines of connections and channels (see the module's docstring)."""

    __slots__ = ("_log", "debug", "info", "payloads")

    def __init__(self, *, payloads: bool = False, logger: logging.Logger | None = None) -> None:
        self._log = logger if logger is not None else logging.getLogger(EVENTS_LOGGER)
        #: Whether INFO lines (open, close) are written: test it before calling.
        self.info = self._log.isEnabledFor(logging.INFO)
        #: Whether DEBUG lines (subscribe, publish) are written: test it before calling.
        self.debug = self._log.isEnabledFor(logging.DEBUG)
        #: Whether publish lines carry the publication's data (``[log] payloads``).
        self.payloads = payloads

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        fields = {"event": event, **fields}
        self._log.log(level, "%s", _Lazy(fields), extra=fields)

    def opened(self, transport: str, ip: str, client: str) -> None:
        """A connection opened (INFO)."""
        self._emit(logging.INFO, "open", {"transport": transport, "ip": ip, "client": client})

    def closed(
        self,
        transport: str,
        ip: str,
        client: str,
        user: str | None,
        seconds: float | None,
        code: int | None,
        reason: str,
    ) -> None:
        """A connection closed (INFO): who, how long, and why (``code`` None: the
        client went away without a close code)."""
        self._emit(
            logging.INFO,
            "close",
            {
                "transport": transport,
                "ip": ip,
                "client": client,
                "user": user,
                "duration": None if seconds is None else round(seconds, 3),
                "code": code,
                "reason": reason,
            },
        )

    def subscribed(self, client: str, channel: str) -> None:
        """A client subscribed to a channel (DEBUG)."""
        self._emit(logging.DEBUG, "subscribe", {"client": client, "channel": channel})

    def unsubscribed(self, client: str, channel: str) -> None:
        """A client left a channel (DEBUG)."""
        self._emit(logging.DEBUG, "unsubscribe", {"client": client, "channel": channel})

    def published(self, channel: str, data: object, tags: dict[str, str] | None) -> None:
        """A publication to ``channel`` (DEBUG); its data only with :attr:`payloads`."""
        fields: dict[str, Any] = {"channel": channel}
        if tags:
            fields["tags"] = tags
        if self.payloads:
            fields["data"] = orjson.dumps(data).decode()[:MAX_PAYLOAD]
        self._emit(logging.DEBUG, "publish", fields)

    def fell_back(self, client: str, ip: str, transport: str, chain: str, reasons: str) -> None:
        """A client connected over ``transport`` after others failed (DEBUG): ``chain``
        (``websocket>xhr-streaming``) and ``reasons``, as the client reported them."""
        fields = {"client": client, "ip": ip, "transport": transport, "chain": chain}
        self._emit(logging.DEBUG, "fallback", {**fields, "reasons": reasons})

    def fallback_ignored(self, client: str, ip: str, problem: str) -> None:
        """A client's fallback report was malformed and ignored (DEBUG): ``problem``."""
        self._emit(
            logging.DEBUG, "fallback_ignored", {"client": client, "ip": ip, "problem": problem}
        )


class _Warnings:
    """The WARNING lines of one counter, at most one per :data:`WARNING_INTERVAL`."""

    __slots__ = ("_clock", "_next", "_unlogged")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._next = 0.0
        self._unlogged = 0

    def warn(self, fields: dict[str, Any], message: str, args: tuple[object, ...]) -> None:
        now = self._clock()
        if now < self._next:
            self._unlogged += 1
            return
        self._next = now + WARNING_INTERVAL
        if self._unlogged:
            message += " (and %d more like it since the last such line)"
            args = (*args, self._unlogged)
            self._unlogged = 0
        logging.getLogger(NODE_LOGGER).warning(message, *args, extra=fields)


class Counters(Counter[str]):
    """The node's counters by name, and the WARNING lines of refusals and limit hits.

    Plain increments (``counters[name] += 1``) count without a line; :meth:`refused`
    and :meth:`limit` count and write one (see the module docstring). ``clock``:
    monotonic seconds.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._warnings: dict[str, _Warnings] = {}
        #: Transport fallbacks clients reported, by (first transport tried, the one that
        #: worked): names the caller checked against a fixed set (``protocol/fallback.py``).
        self.fallbacks: Counter[tuple[str, str]] = Counter()

    def _warn(self, counter: str, fields: dict[str, Any], message: str, *args: object) -> None:
        self[counter] += 1
        warnings = self._warnings.get(counter)
        if warnings is None:
            warnings = self._warnings[counter] = _Warnings(self._clock)
        warnings.warn(fields, message, args)  # the JSON log shows the fields

    def refused(self, counter: str, message: str, *args: object) -> None:
        """A connection or request refused (``event=refused``): ``message % args``."""
        self._warn(counter, {"event": "refused", "counter": counter}, message, *args)

    def limit(self, counter: str, client: str, ip: str) -> None:
        """A limit (``counter``) refused a command of ``client`` (from ``ip``) without
        closing its connection (``event=limit``, with ``client`` and ``ip``)."""
        fields = {"event": "limit", "counter": counter, "client": client, "ip": ip}
        self._warn(counter, fields, "client %s (%s): a command refused: %s", client, ip, counter)


class _Lazy:
    """A record's message, made from its fields only when a handler formats it."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return _text(self.fields)
