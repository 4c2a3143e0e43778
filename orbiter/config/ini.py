"""The seeds' INI config format (Orbited 0.3 / 0.7), read as-is and turned into TOML.

``orbiter --config chat.ini`` reads a file like the TurboGears tutorial's::

    [listen]
    http://:9000
    stomp://:61613

    [access]
    * -> localhost:61613

    [global]
    session.ping_interval = 20

and Orbited 0.3's ``[global] proxy.enabled = 1`` / ``[proxy] /orbited -> ORBITED``.
:func:`parse_ini` maps each line onto the native TOML structure (a dict that
:func:`orbiter.config.settings.config_from_dict` checks); anything it does not
understand is an error naming the line, never skipped. :func:`to_toml`
writes that structure as TOML (``orbiter config convert``). Pure code, no I/O
except :func:`load_any_config`, which reads a file of either format.

Mapping (docs/config.md, "The seeds' INI format"):

- ``[listen]`` ``http://HOST:PORT`` -> ``server.host``/``server.port`` (an
  empty HOST is every interface, ``0.0.0.0``, as Orbited did);
  ``stomp://HOST:PORT`` -> ``stomp.listen``; ``orbit://HOST:PORT`` -> the
  pyorbited listener (an empty HOST is ``127.0.0.1``: that protocol has no
  authentication). A file with no ``[listen]`` section is an Orbited 0.3
  config, whose server took pyorbited's events on port 9000 (pyorbited's
  ``Client()`` default) without being told: it opens the pyorbited listener
  on ``127.0.0.1:9000``, as the seeds' apps expect.
- ``[access]`` ``SOURCE -> HOST:PORT`` -> a ``[[tcp.access]]`` rule.
- ``[global]`` ``session.ping_interval``, ``session.ping_timeout``,
  ``proxy.enabled``, ``proxy.keepalive``.
- ``[proxy]`` ``PREFIX -> ORBITED | URL`` -> a ``[[dev_proxy.route]]``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from orbiter.config.settings import Config, ConfigError, config_from_dict, load_config

#: Where Orbited 0.3 took pyorbited's events, and pyorbited's ``Client()`` sends them.
PYORBITED_PORT = 9000
#: Suffixes read as INI; anything else is TOML unless it starts like an INI file.
INI_SUFFIXES = (".ini", ".cfg", ".conf")
_SECTIONS = ("listen", "access", "global", "proxy")
_LISTEN = re.compile(r"(?P<scheme>[a-z]+)://(?P<host>\[[^\]]*\]|[^:/\s]*)(?::(?P<port>[0-9]+))?/?")
_GLOBAL_KEYS: dict[str, tuple[str, str, type]] = {
    "session.ping_interval": ("session", "ping_interval", float),
    "session.ping_timeout": ("session", "pong_timeout", float),
    "proxy.enabled": ("dev_proxy", "enabled", bool),
    "proxy.keepalive": ("dev_proxy", "keepalive", bool),
}


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.out: dict[str, Any] = {}
        #: Where each TOML key came from, so later errors can name the line too.
        self.lines: dict[str, tuple[int, str]] = {}
        self.http_seen = False
        self.listen_seen = False

    def error(self, lineno: int, line: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}, line {lineno} ({line.strip()!r}): {message}")

    def table(self, name: str) -> dict[str, Any]:
        table: dict[str, Any] = self.out.setdefault(name, {})
        return table

    def listen(self, lineno: int, line: str) -> None:
        match = _LISTEN.fullmatch(line)
        if match is None:
            raise self.error(lineno, line, "a [listen] line is 'scheme://host:port'")
        scheme, host, port_text = match["scheme"], match["host"].strip("[]"), match["port"]
        if port_text is None:
            raise self.error(lineno, line, "the listener needs a port")
        port = int(port_text) if len(port_text) <= 5 else -1
        if not 0 <= port <= 65535:
            raise self.error(lineno, line, "the port must be between 0 and 65535")
        if scheme == "http":
            if self.http_seen:
                raise self.error(lineno, line, "orbiter listens for HTTP on one address only")
            self.http_seen = True
            server = self.table("server")
            server["host"], server["port"] = host or "0.0.0.0", port
            self.lines["server.host"] = self.lines["server.port"] = (lineno, line)
        elif scheme == "stomp":
            self.table("stomp")["listen"] = f"{host}:{port}" if host else f":{port}"
            self.lines["stomp.listen"] = (lineno, line)
        elif scheme == "orbit":
            table = self.table("pyorbited")
            table.update(enabled=True, host=host or "127.0.0.1", port=port)
            self.lines["pyorbited.port"] = self.lines["pyorbited.host"] = (lineno, line)
        elif scheme == "https":
            raise self.error(
                lineno, line, "TLS listeners are not supported: put a TLS proxy in front"
            )
        else:
            raise self.error(lineno, line, f"unknown listener scheme {scheme!r}")

    def access(self, lineno: int, line: str) -> None:
        source, arrow, dest = line.partition("->")
        if not arrow or not source.strip() or not dest.strip():
            raise self.error(lineno, line, "an [access] line is 'SOURCE -> HOST:PORT'")
        rules = self.table("tcp").setdefault("access", [])
        self.lines[f"tcp.access[{len(rules)}]"] = (lineno, line)
        rules.append({"to": dest.strip(), "via": source.strip()})

    def global_(self, lineno: int, line: str) -> None:
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise self.error(lineno, line, "a [global] line is 'key = value'")
        known = _GLOBAL_KEYS.get(key)
        if known is None:
            raise self.error(
                lineno,
                line,
                f"unknown [global] key {key!r} (orbiter understands "
                + ", ".join(_GLOBAL_KEYS)
                + ")",
            )
        table_name, name, kind = known
        if kind is bool:
            if value not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
                raise self.error(lineno, line, f"{key} must be 0 or 1")
            parsed: Any = value in ("1", "true", "yes", "on")
        else:
            try:
                parsed = float(value)
            except ValueError:
                raise self.error(lineno, line, f"{key} must be a number of seconds") from None
            if parsed.is_integer():
                parsed = int(parsed)
        self.table(table_name)[name] = parsed
        self.lines[f"{table_name}.{name}"] = (lineno, line)

    def proxy(self, lineno: int, line: str) -> None:
        prefix, arrow, target = line.partition("->")
        if not arrow or not prefix.strip() or not target.strip():
            raise self.error(
                lineno, line, "a [proxy] line is 'PREFIX -> ORBITED' or 'PREFIX -> URL'"
            )
        routes = self.table("dev_proxy").setdefault("route", [])
        self.lines[f"dev_proxy.route[{len(routes)}]"] = (lineno, line)
        routes.append({"prefix": prefix.strip(), "to": target.strip()})


def parse_ini(
    text: str, source: str = "config"
) -> tuple[dict[str, Any], dict[str, tuple[int, str]]]:
    """The TOML structure an INI config text means, and the line each key came from."""
    reader = _Reader(source)
    handlers = {
        "listen": reader.listen,
        "access": reader.access,
        "global": reader.global_,
        "proxy": reader.proxy,
    }
    section: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise reader.error(lineno, raw, "a section header is '[name]'")
            section = line[1:-1].strip().lower()
            reader.listen_seen |= section == "listen"
            if section not in handlers:
                raise reader.error(
                    lineno,
                    raw,
                    f"unknown section [{section}] (orbiter understands "
                    + ", ".join(f"[{s}]" for s in _SECTIONS)
                    + ")",
                )
            continue
        if section is None:
            raise reader.error(lineno, raw, "a setting before any [section]")
        handlers[section](lineno, line)
    if not reader.listen_seen:  # Orbited 0.3: events on 127.0.0.1:9000 by default
        reader.out["pyorbited"] = {"enabled": True, "host": "127.0.0.1", "port": PYORBITED_PORT}
    dev_proxy = reader.out.get("dev_proxy")
    if dev_proxy is not None and "route" in dev_proxy:
        dev_proxy.setdefault("enabled", True)  # a [proxy] section means: proxy, unless disabled
    return reader.out, reader.lines


def config_from_ini(text: str, source: str = "config") -> Config:
    """A checked :class:`Config` from INI text; errors name the line they come from."""
    raw, lines = parse_ini(text, source)
    try:
        return config_from_dict(raw, source=source)
    except ConfigError as exc:
        message = str(exc)
        for key, (lineno, line) in sorted(lines.items(), key=lambda kv: -len(kv[0])):
            if f"'{key}" in message:
                raise ConfigError(f"{message} (line {lineno}: {line.strip()!r})") from None
        raise


def looks_like_ini(text: str) -> bool:
    """Does the first section header name one of the seeds' INI sections?"""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        return line.lower().strip("[] ") in _SECTIONS and line.startswith("[")
    return False


def load_any_config(path: str | Path) -> Config:
    """Read a config file: the seeds' INI format (by suffix or content) or TOML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() in INI_SUFFIXES or looks_like_ini(text):
        return config_from_ini(text, source=str(path))
    return load_config(path)


# ------------------------------------------------------------------------------ TOML output


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = "".join(c if ord(c) >= 32 else f"\\u{ord(c):04x}" for c in escaped)
        return f'"{escaped}"'
    raise TypeError(f"no TOML form for {type(value).__name__}")


def to_toml(raw: dict[str, Any], header: str = "") -> str:
    """TOML text for a structure of tables, arrays of tables and scalars (what parse_ini makes)."""
    out = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    order = ["server", "session", "stomp", "pyorbited", "tcp", "dev_proxy"]
    for name in sorted(raw, key=lambda n: (order.index(n) if n in order else len(order), n)):
        table = raw[name]
        scalars = {k: v for k, v in table.items() if not isinstance(v, list)}
        arrays = {k: v for k, v in table.items() if isinstance(v, list)}
        if scalars or not arrays:
            out.append(f"\n[{name}]")
            out += [f"{key} = {_toml_value(value)}" for key, value in scalars.items()]
        for key, items in arrays.items():
            for item in items:
                out.append(f"\n[[{name}.{key}]]")
                out += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
    return "\n".join(out).lstrip("\n") + "\n"


def convert_main(argv: list[str]) -> int:
    """``orbiter config convert FILE.ini [-o FILE.toml]``: print (or write) the TOML form."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="orbiter config", description="config file tools")
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="turn a seed-era INI config into TOML")
    convert.add_argument("file", help="the INI file (Orbited 0.3 / 0.7 format)")
    convert.add_argument("-o", "--output", help="write the TOML here (default: print it)")
    args = parser.parse_args(argv)
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
        raw, _ = parse_ini(text, source=str(path))
        config_from_ini(text, source=str(path))  # the same checks as at start-up
    except OSError as exc:
        print(f"orbiter: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    except (ConfigError, UnicodeDecodeError) as exc:
        print(f"orbiter: {exc}", file=sys.stderr)
        return 2
    toml = to_toml(raw, header=f"Converted from {path.name} by 'orbiter config convert'.")
    if args.output:
        Path(args.output).write_text(toml, encoding="utf-8")
    else:
        sys.stdout.write(toml)
    return 0
