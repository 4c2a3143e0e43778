"""Which TCP backends a browser may reach through the proxy: the ``[access]`` rules.

Deny by default. A rule names one exact destination ``host:port`` (no
wildcards: a rule is a hole in the firewall, and each hole is spelled out)
and may restrict who may use it by the ``Host`` the browser used to reach
orbiter (the seed's ``localhost:9000 -> irc.example.org:6667``; ``*`` is any)
and by the page's ``Origin`` (``*``: any, the default). The first rule that
matches allows the connection; none matching denies it.

Destinations are compared as the browser spelled them, case-insensitively:
a rule for ``localhost:61613`` does not allow ``127.0.0.1:61613``. No DNS is
consulted here. Pure code, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A host name (RFC 1123 labels), an IPv4 address, or a bracketless IPv6 address.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]{2,45}")


class BadTarget(ValueError):
    """A destination or rule text is malformed; the message says how."""


@dataclass(frozen=True, slots=True)
class Target:
    """A TCP destination: host (lower-cased, no brackets) and port."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Target:
        """``host:port`` or ``[v6addr]:port``; wildcards and missing ports are errors."""
        text = text.strip()
        if "*" in text:
            raise BadTarget(f"destination {text!r}: wildcards are not allowed")
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise BadTarget(f"destination {text!r} must be '[address]:port'")
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise BadTarget(f"destination {text!r} must be 'host:port'")
        return cls.build(host, port_text)

    @classmethod
    def build(cls, host: str, port: str | int) -> Target:
        host = host.strip().lower()
        if not host or not _HOST.fullmatch(host) or (":" in host and "." in host.split(":")[0]):
            raise BadTarget(f"host {host[:80]!r} is not a host name or IP address")
        try:
            number = int(str(port).strip(), 10)
        except ValueError:
            raise BadTarget(f"port {str(port)[:20]!r} is not a number") from None
        if not 1 <= number <= 65535:
            raise BadTarget(f"port {number} is not between 1 and 65535")
        return cls(host, number)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AccessRule:
    """Browsers that reached orbiter as ``via`` from ``origin`` may open ``to``."""

    to: Target
    #: The ``Host`` header (``host`` or ``host:port``, lower-cased) or ``*``.
    via: str = "*"
    #: The ``Origin`` header (``scheme://host[:port]``) or ``*``.
    origin: str = "*"

    @classmethod
    def parse_line(cls, line: str) -> AccessRule:
        """The seed's ``SOURCE -> HOST:PORT`` line (SOURCE: ``*`` or the Host used)."""
        source, arrow, dest = line.partition("->")
        if not arrow:
            raise BadTarget(f"access rule {line.strip()!r} must be 'SOURCE -> HOST:PORT'")
        return cls.build(to=dest, via=source)

    @classmethod
    def build(cls, *, to: str, via: str = "*", origin: str = "*") -> AccessRule:
        via = via.strip().lower() or "*"
        origin = origin.strip().lower().rstrip("/") or "*"
        if via != "*" and ("*" in via or any(c.isspace() for c in via)):
            raise BadTarget(f"access rule source {via!r} must be '*' or an exact host[:port]")
        if origin != "*" and (not re.fullmatch(r"[a-z][a-z0-9+.\-]*://[^\s/*]+", origin)):
            raise BadTarget(f"access rule origin {origin!r} must be '*' or scheme://host[:port]")
        return cls(Target.parse(to), via, origin)


@dataclass(frozen=True, slots=True)
class Requester:
    """What the proxy knows of the browser asking: the headers it sent."""

    host: str | None = None
    origin: str | None = None


def _split_host(text: str) -> tuple[str, str | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port or None)."""
    text = text.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def _same_host(rule_via: str, host_header: str | None) -> bool:
    """Does the request's ``Host`` match a rule's source (a port in the rule must match too)?"""
    if rule_via == "*":
        return True
    if host_header is None:
        return False
    want_host, want_port = _split_host(rule_via)
    host, port = _split_host(host_header)
    return host == want_host and (want_port is None or port == want_port)


class AccessPolicy:
    """An ordered list of rules; :meth:`allows` is the one place access is decided."""

    def __init__(self, rules: tuple[AccessRule, ...]) -> None:
        self.rules = rules

    def allows(self, target: Target, requester: Requester) -> bool:
        return self.matching_rule(target, requester) is not None

    def matching_rule(self, target: Target, requester: Requester) -> AccessRule | None:
        origin = None if requester.origin is None else requester.origin.strip().lower()
        for rule in self.rules:
            if rule.to != target:
                continue
            if rule.origin != "*" and rule.origin != (origin or "").rstrip("/"):
                continue
            if _same_host(rule.via, requester.host):
                return rule
        return None
