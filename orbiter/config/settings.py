"""Server configuration: defaults, the TOML file format, and per-channel rules.

A config file is optional; without one orbiter runs the embedded default
(open HTTP API, clients may publish to ``chat:*`` so the demo works). Every
key in a file is checked: an unknown key or a wrong type is an error that
names the key, never silently ignored. ``docs/config.md`` lists the keys.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orbiter.config.live import LiveSettings, RpcSettings, live_settings_from, rpc_settings_from
from orbiter.config.stomp import StompSettings, stomp_settings_from
from orbiter.config.storage import EngineSettings, engine_settings_from
from orbiter.config.tcp import (
    DevProxySettings,
    PyorbitedSettings,
    TcpSettings,
    dev_proxy_settings_from,
    pyorbited_settings_from,
    tcp_settings_from,
)
from orbiter.config.values import SettingsError, check_positive, kinds_of, scalars, typed


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """What clients may do on the channels whose names match ``match`` (a glob)."""

    match: str = "*"
    client_publish: bool = False
    #: Track who is subscribed, by user, and push join/leave to subscribers.
    presence: bool = False
    history_size: int = 100
    history_ttl: float = 300.0
    #: Who may subscribe: ``anyone`` (every connection, authenticated when auth
    #: is on), ``token`` (the connection token's ``channels`` claim lists it),
    #: ``private`` (a per-channel subscription token), ``hook`` (the app's
    #: subscribe hook decides). See ``orbiter/auth/permissions.py``.
    subscribe: str = "anyone"
    #: Send browser publishes on these channels to the app's publish hook first.
    publish_hook: bool = False


#: The values ``[[channel]] subscribe`` takes.
SUBSCRIBE_MODES = ("anyone", "token", "private", "hook")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on every input and buffer."""

    #: Bytes of one message from a client (its UTF-8 payload: a WebSocket message, a SockJS
    #: message, a STOMP body), at most, the same on every transport; 1 MiB as Socket.IO's
    #: ``maxHttpBufferSize``.
    max_message_size: int = 1_048_576
    max_http_body: int = 1_048_576
    max_subscriptions: int = 128
    outgoing_buffer: int = 4_194_304
    #: Client connections (sessions) on this node at once, and from one IP address.
    max_connections: int = 10_000
    max_connections_per_ip: int = 100
    #: Browser publishes per second on one connection (token bucket), and its burst.
    publish_rate: float = 20.0
    publish_burst: int = 40
    #: Channel streams kept (subscribed, published to or read; idle ones are forgotten
    #: after ``history.meta_ttl``); what would open one more is refused.
    max_channels: int = 100_000
    #: The largest ``history_size`` a channel rule may ask for.
    max_history_size: int = 10_000
    #: WebSocket frames (messages, pings, pongs) one client may send per second; past
    #: it the server reads no more from that connection until the next second (TCP
    #: pushes back on the client), so a flood cannot take the server's time.
    frame_rate: int = 200
    #: Seconds a new connection has to send its whole first request head; past it
    #: the connection is closed (slowloris).
    head_timeout: float = 10.0
    #: Seconds a request body may go without a byte arriving before the request
    #: is dropped (a ``Content-Length`` that is never sent).
    body_timeout: float = 10.0
    #: Seconds a request body may take in all, however steadily it trickles (a byte
    #: every few seconds); past it 408. 60 s moves ``max_http_body`` (1 MiB) at
    #: 17 KiB/s: raise both together.
    body_deadline: float = 60.0


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Connection tokens (JWT): how they are verified. Empty: auth by token is off."""

    #: HMAC secret for HS256 tokens.
    secret: str = ""
    #: PEM public key (RS256 or ES256), inline or read from ``public_key_file``.
    public_key: str = ""
    #: When set, tokens must carry this ``aud`` / ``iss``.
    audience: str = ""
    issuer: str = ""
    #: Seconds of clock skew tolerated on ``exp``.
    leeway: float = 0.0
    #: Let connections without a token in, as anonymous (no user): they may join
    #: ``subscribe = "anyone"`` channels, never be an Orbited key. A bad token is
    #: still refused.
    anonymous: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.public_key)


@dataclass(frozen=True, slots=True)
class HookSettings:
    """HTTP callbacks to the app server (hookbox / Centrifugo-proxy model). Empty: off."""

    connect_url: str = ""
    subscribe_url: str = ""
    publish_url: str = ""
    #: Seconds to wait for the app's answer; a time-out denies (fails closed).
    timeout: float = 3.0


@dataclass(frozen=True, slots=True)
class OriginSettings:
    """Which page origins may open connections (WebSocket, SockJS, SSE, polls)."""

    #: Origins allowed besides the server's own, e.g. ``"https://app.example.com"``;
    #: ``"*"`` allows every origin.
    allow: tuple[str, ...] = ()
    #: Also allow ``http(s)://localhost``, ``127.0.0.1`` and ``[::1]`` on any port.
    #: None: only while running open (no auth configured), as in development.
    localhost: bool | None = None


@dataclass(frozen=True, slots=True)
class SessionTiming:
    """Heartbeats: how often the server pings, and how long it waits for an answer."""

    #: The seed's ``session.ping_interval``.
    ping_interval: float = 25.0
    pong_timeout: float = 10.0
    #: Seconds a channel's publications wait to be written together (0: written
    #: at the end of the event-loop iteration they arrived in).
    write_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class SockJSSettings:
    """The SockJS endpoint: where it is mounted, its timings, its test services."""

    prefix: str = "/sockjs"
    #: Seconds without a frame after which a receiving connection gets ``h``.
    heartbeat: float = 25.0
    #: Seconds a session outlives its last receiving connection.
    disconnect_delay: float = 5.0
    #: Bytes after which a streaming response is ended (the client reopens it).
    response_limit: int = 131_072
    #: Mount the SockJS protocol suite's services (echo, close, ...) under the prefix.
    test_services: bool = False
    #: The sockjs-client script that ``iframe.html`` loads.
    client_url: str = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"


@dataclass(frozen=True, slots=True)
class PollSettings:
    """Long polls (``GET /poll``, the Orbited ``xhr`` URLs): how long one is held, how many."""

    #: Seconds a poll waits for a publication before it is answered empty.
    timeout: float = 25.0
    #: Polls held at once; past it a poll is answered 503 at once.
    max_waiting: int = 10_000


@dataclass(frozen=True, slots=True)
class OrbitedSettings:
    """The Orbited 0.3 URLs (``/<location>|<user>,<session>,<transport>``)."""

    #: Seconds a key's position outlives its last connection (the next one resumes there).
    disconnect_delay: float = 30.0
    #: Bytes after which an iframe stream ends and the iframe loads it again.
    response_limit: int = 1_048_576


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The server's log lines (``orbiter/logs.py``)."""

    #: ``debug`` (adds subscribes and publishes), ``info`` (a line per connection open and
    #: close), ``warning``; ``orbiter serve --log-level`` overrides it.
    level: str = "info"
    #: ``text`` (``time LEVEL logger: message``) or ``json`` (one object per line).
    format: str = "text"
    #: Debug publish lines carry the publication's data (its first 500 characters).
    payloads: bool = False


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``GET /metrics``, Prometheus' text format (``orbiter/http/metrics.py``)."""

    #: Serve ``/metrics`` and time one channel hand-over in 16 (false: neither).
    enabled: bool = True
    #: Answer scrapers without ``server.api_key`` (a scraper on a private network);
    #: false: ``/metrics`` needs the key whenever one is set, as ``/api`` does.
    public: bool = False


_LOG_LEVELS = ("debug", "info", "warning")
_LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    #: Addresses of reverse proxies whose ``X-Forwarded-For`` names the real client
    #: (for per-IP limits and logs); requests from anyone else are taken as they come.
    trusted_proxies: tuple[str, ...] = ()
    #: ``Host`` names (or IP addresses) requests may carry, like Django's
    #: ``ALLOWED_HOSTS``; a leading ``.`` matches a domain and its subdomains, ``"*"``
    #: any host. Empty: while running open (no API key, no auth) only the bound
    #: address and localhost names (so a page elsewhere cannot reach a developer's
    #: server by DNS rebinding); any host once an API key or auth is set.
    allowed_hosts: tuple[str, ...] = ()
    #: First matching rule wins; channels matching none use ``channel_defaults``.
    channels: tuple[ChannelRule, ...] = (
        # The chat app at "/": a room's backlog of a day, up to 1,000 lines.
        ChannelRule(
            match="chat:*",
            client_publish=True,
            presence=True,
            history_size=1000,
            history_ttl=86_400.0,
        ),
    )
    channel_defaults: ChannelRule = ChannelRule()
    #: How long a channel's epoch and offset outlive its last publication
    #: and last subscriber before the stream is forgotten.
    history_meta_ttl: float = 86_400.0
    #: Bytes of publication data the node keeps in history, over every channel;
    #: past it the oldest publications are dropped first (``history.max_bytes``).
    history_max_bytes: int = 268_435_456
    limits: Limits = field(default_factory=Limits)
    sockjs: SockJSSettings = field(default_factory=SockJSSettings)
    poll: PollSettings = field(default_factory=PollSettings)
    orbited: OrbitedSettings = field(default_factory=OrbitedSettings)
    session: SessionTiming = field(default_factory=SessionTiming)
    auth: AuthSettings = field(default_factory=AuthSettings)
    hooks: HookSettings = field(default_factory=HookSettings)
    origins: OriginSettings = field(default_factory=OriginSettings)
    #: The browser TCP proxy, the pyorbited listener, the dev proxy (orbiter/config/tcp.py).
    tcp: TcpSettings = field(default_factory=TcpSettings)
    pyorbited: PyorbitedSettings = field(default_factory=PyorbitedSettings)
    dev_proxy: DevProxySettings = field(default_factory=DevProxySettings)
    #: The embedded STOMP broker (orbiter/config/stomp.py).
    stomp: StompSettings = field(default_factory=StompSettings)
    #: Where channel streams are kept (orbiter/config/storage.py).
    engine: EngineSettings = field(default_factory=EngineSettings)
    #: Live elements: call limits and the mounted element pages (orbiter/config/live.py).
    live: LiveSettings = field(default_factory=LiveSettings)
    #: The RPC proxy to the app server (orbiter/config/live.py).
    rpc: RpcSettings = field(default_factory=RpcSettings)
    #: The log's level and format (``[log]``).
    log: LogSettings = field(default_factory=LogSettings)
    #: ``GET /metrics`` (``[metrics]``).
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    #: Each channel's rule once looked up (a copy by ``replace`` starts empty).
    _rules_seen: dict[str, ChannelRule] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def auth_required(self) -> bool:
        """Connections must be authenticated (a token, or the app's connect hook)."""
        return self.auth.enabled or bool(self.hooks.connect_url)

    def rule_for(self, channel: str) -> ChannelRule:
        """The rule that governs ``channel``: the first whose glob matches, else the default.

        Asked on every subscribe and publish, so the answer is kept per channel name
        (a dict lookup; hashing the rules as ``lru_cache`` did cost more than the match).
        """
        rule = self._rules_seen.get(channel)
        if rule is None:
            rule = _first_rule(self.channels, self.channel_defaults, channel)
            if len(self._rules_seen) >= _RULES_SEEN:
                self._rules_seen.clear()  # names from clients: bounded, never grown past
            self._rules_seen[channel] = rule
        return rule


#: How many channel names :meth:`Config.rule_for` remembers.
_RULES_SEEN = 65_536


def _first_rule(rules: tuple[ChannelRule, ...], default: ChannelRule, channel: str) -> ChannelRule:
    for rule in rules:
        if fnmatch.fnmatchcase(channel, rule.match):
            return rule
    return default


# --------------------------------------------------------------------------- loading

_SERVER_KEYS = {"host": str, "port": int, "api_key": str}
_TOP_LEVEL = {
    "server",
    "limits",
    "session",
    "channel_defaults",
    "channel",
    "history",
    "sockjs",
    "poll",
    "orbited",
    "auth",
    "hooks",
    "origins",
    "tcp",
    "pyorbited",
    "dev_proxy",
    "stomp",
    "engine",
    "live",
    "rpc",
    "log",
    "metrics",
}
#: A prefix is one or more path segments of URL-safe characters, no trailing slash.
_SOCKJS_PREFIX = re.compile(r"(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+")
_RESERVED_PREFIXES = {"/api", "/static", "/connection", "/poll"}
#: ``scheme://host[:port]``: what a browser sends in ``Origin``.
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def load_config(path: str | Path) -> Config:
    """Read a TOML config file."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict[str, Any], *, source: str = "config") -> Config:
    """Build a :class:`Config` from parsed TOML, checking every key."""
    for key in raw:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"{source}: unknown section or key {key!r}")
    server = dict(_table(raw, "server", source))
    kwargs: dict[str, Any] = {}
    if "trusted_proxies" in server:
        kwargs["trusted_proxies"] = _addresses(server.pop("trusted_proxies"), source)
    if "allowed_hosts" in server:
        kwargs["allowed_hosts"] = _hosts(server.pop("allowed_hosts"), source)
    for key, value in server.items():
        kind = _SERVER_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{source}: unknown key 'server.{key}'")
        kwargs[key] = _typed(f"server.{key}", value, kind, source)
    if "port" in kwargs and not 0 <= kwargs["port"] <= 65535:
        raise ConfigError(f"{source}: 'server.port' must be between 0 and 65535")
    if kwargs.get("api_key") == "":
        kwargs["api_key"] = None

    limits = _dataclass_from(Limits, _table(raw, "limits", source), "limits", source)
    _check_positive(limits, "limits", source)
    if limits.body_deadline < limits.body_timeout:
        raise ConfigError(
            f"{source}: 'limits.body_deadline' ({limits.body_deadline:g}) is less than "
            f"'limits.body_timeout' ({limits.body_timeout:g}): a body's whole time "
            "cannot be shorter than its idle time"
        )
    kwargs["auth"] = _auth(_table(raw, "auth", source), source)
    kwargs["hooks"] = _hooks(_table(raw, "hooks", source), source)
    kwargs["origins"] = _origins(_table(raw, "origins", source), source)
    try:
        kwargs["tcp"] = tcp_settings_from(_table(raw, "tcp", source))
        kwargs["pyorbited"] = pyorbited_settings_from(_table(raw, "pyorbited", source))
        kwargs["dev_proxy"] = dev_proxy_settings_from(_table(raw, "dev_proxy", source))
    except SettingsError as exc:
        raise ConfigError(f"{source}: {exc}") from None

    timing = _dataclass_from(SessionTiming, _table(raw, "session", source), "session", source)
    _check_positive(timing, "session", source, ("ping_interval", "pong_timeout"))
    if not 0 <= timing.write_delay <= 1:
        raise ConfigError(f"{source}: 'session.write_delay' must be between 0 and 1 seconds")

    kwargs["sockjs"] = _sockjs(_table(raw, "sockjs", source), source)
    try:
        kwargs["stomp"] = stomp_settings_from(_table(raw, "stomp", source))
        kwargs["engine"] = engine_settings_from(_table(raw, "engine", source))
        kwargs["live"] = live_settings_from(_table(raw, "live", source))
        kwargs["rpc"] = rpc_settings_from(_table(raw, "rpc", source))
    except SettingsError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    kwargs["log"] = _log(_table(raw, "log", source), source)
    kwargs["metrics"] = _dataclass_from(
        MetricsSettings, _table(raw, "metrics", source), "metrics", source
    )
    for name, settings_class in (("poll", PollSettings), ("orbited", OrbitedSettings)):
        kwargs[name] = _positive(settings_class, _table(raw, name, source), name, source)

    history = _table(raw, "history", source)
    for key in history:
        if key not in ("meta_ttl", "max_bytes"):
            raise ConfigError(f"{source}: unknown key 'history.{key}'")
    if "meta_ttl" in history:
        kwargs["history_meta_ttl"] = float(
            _typed("history.meta_ttl", history["meta_ttl"], float, source)
        )
    if "max_bytes" in history:
        kwargs["history_max_bytes"] = _typed("history.max_bytes", history["max_bytes"], int, source)
        if kwargs["history_max_bytes"] <= 0:
            raise ConfigError(f"{source}: 'history.max_bytes' must be positive")

    defaults_table = _table(raw, "channel_defaults", source)
    if "match" in defaults_table:
        raise ConfigError(f"{source}: 'channel_defaults' takes no 'match'")
    defaults = _rule(ChannelRule(), defaults_table, "channel_defaults", source)
    kwargs["channel_defaults"] = defaults
    if "channel" in raw:
        rules = raw["channel"]
        if not isinstance(rules, list):
            raise ConfigError(f"{source}: 'channel' must be an array of tables ([[channel]])")
        parsed = []
        for i, table in enumerate(rules):
            where = f"channel[{i}]"
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: '{where}' must be a table")
            if not isinstance(table.get("match"), str) or not table["match"]:
                raise ConfigError(f"{source}: '{where}.match' must be a non-empty string")
            parsed.append(_rule(defaults, table, where, source))
        kwargs["channels"] = tuple(parsed)
    config = Config(limits=limits, session=timing, **kwargs)
    _check_rules(config, source)
    return config


def _addresses(value: object, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: 'server.trusted_proxies' must be a list of IP addresses")
    out = []
    for text in value:
        try:
            out.append(str(ipaddress.ip_address(text)))
        except ValueError:
            raise ConfigError(
                f"{source}: 'server.trusted_proxies' entry {text!r} is not an IP address"
            ) from None
    return tuple(out)


#: A ``Host`` name: DNS labels, an IPv4 address, or a bracketed IPv6 one; a leading
#: ``.`` for a domain and its subdomains.
_HOST_PATTERN = re.compile(r"\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\]")


def _hosts(value: object, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: 'server.allowed_hosts' must be a list of host names")
    for text in value:
        if text != "*" and not _HOST_PATTERN.fullmatch(text):
            raise ConfigError(
                f"{source}: 'server.allowed_hosts' entry {text!r} is not a host name "
                "like 'app.example.com', '.example.com', '[::1]' or '*' (no port, no scheme)"
            )
    return tuple(v.lower() for v in value)


def _auth(table: dict[str, Any], source: str) -> AuthSettings:
    table = dict(table)
    key_file = table.pop("public_key_file", None)
    settings: AuthSettings = _dataclass_from(AuthSettings, table, "auth", source)
    if key_file is not None:
        if not isinstance(key_file, str) or settings.public_key:
            raise ConfigError(
                f"{source}: 'auth.public_key_file' must be a path, and not go with 'public_key'"
            )
        try:
            settings = replace(settings, public_key=Path(key_file).read_text())
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, not UTF-8
            raise ConfigError(f"{source}: cannot read 'auth.public_key_file': {exc}") from None
    if settings.secret and settings.public_key:
        raise ConfigError(f"{source}: set 'auth.secret' or 'auth.public_key', not both")
    if settings.secret and len(settings.secret.encode()) < 32:
        raise ConfigError(f"{source}: 'auth.secret' must be at least 32 bytes long")
    if settings.public_key and "-----BEGIN" not in settings.public_key:
        raise ConfigError(f"{source}: 'auth.public_key' must be a PEM public key")
    if settings.leeway < 0:
        raise ConfigError(f"{source}: 'auth.leeway' must not be negative")
    return settings


def _hooks(table: dict[str, Any], source: str) -> HookSettings:
    settings: HookSettings = _dataclass_from(HookSettings, table, "hooks", source)
    for name in ("connect_url", "subscribe_url", "publish_url"):
        url = getattr(settings, name)
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: 'hooks.{name}' must be an http:// or https:// URL")
    if settings.timeout <= 0:
        raise ConfigError(f"{source}: 'hooks.timeout' must be positive")
    return settings


def _origins(table: dict[str, Any], source: str) -> OriginSettings:
    for key in table:
        if key not in ("allow", "localhost"):
            raise ConfigError(f"{source}: unknown key 'origins.{key}'")
    allow = table.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(o, str) and o for o in allow):
        raise ConfigError(f"{source}: 'origins.allow' must be a list of origins (strings)")
    for origin in allow:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"{source}: 'origins.allow' entry {origin!r} is not an origin "
                "like 'https://app.example.com' (scheme://host[:port], no path) or '*'"
            )
    localhost = table.get("localhost")
    if localhost is not None and type(localhost) is not bool:
        raise ConfigError(f"{source}: 'origins.localhost' must be of type bool")
    return OriginSettings(tuple(o.lower().rstrip("/") for o in allow), localhost)


def _check_rules(config: Config, source: str) -> None:
    """Channel rules against the rest: what a rule asks for must be configured."""
    for where, rule in [("channel_defaults", config.channel_defaults)] + [
        (f"channel[{i}]", r) for i, r in enumerate(config.channels)
    ]:
        if rule.subscribe not in SUBSCRIBE_MODES:
            raise ConfigError(
                f"{source}: '{where}.subscribe' must be one of {', '.join(SUBSCRIBE_MODES)}"
            )
        if rule.subscribe in ("token", "private") and not config.auth.enabled:
            raise ConfigError(
                f"{source}: '{where}.subscribe = \"{rule.subscribe}\"' needs tokens: "
                "set 'auth.secret' or 'auth.public_key'"
            )
        if rule.subscribe == "hook" and not config.hooks.subscribe_url:
            raise ConfigError(
                f"{source}: '{where}.subscribe = \"hook\"' needs 'hooks.subscribe_url'"
            )
        if rule.publish_hook and not config.hooks.publish_url:
            raise ConfigError(f"{source}: '{where}.publish_hook' needs 'hooks.publish_url'")
        if rule.history_size > config.limits.max_history_size:
            raise ConfigError(
                f"{source}: '{where}.history_size' is more than "
                f"'limits.max_history_size' ({config.limits.max_history_size})"
            )


def _sockjs(table: dict[str, Any], source: str) -> SockJSSettings:
    settings: SockJSSettings = _dataclass_from(SockJSSettings, table, "sockjs", source)
    if not _SOCKJS_PREFIX.fullmatch(settings.prefix):
        raise ConfigError(
            f"{source}: 'sockjs.prefix' must be a path like '/sockjs' "
            "(URL-safe segments, no trailing slash)"
        )
    if settings.prefix in _RESERVED_PREFIXES:
        raise ConfigError(f"{source}: 'sockjs.prefix' {settings.prefix!r} is used by orbiter")
    _check_positive(settings, "sockjs", source, ("heartbeat", "disconnect_delay", "response_limit"))
    if not settings.client_url.startswith(("/", "http://", "https://")):
        raise ConfigError(f"{source}: 'sockjs.client_url' must be an absolute path or URL")
    return settings


def _log(table: dict[str, Any], source: str) -> LogSettings:
    settings: LogSettings = _dataclass_from(LogSettings, table, "log", source)
    if settings.level not in _LOG_LEVELS:
        raise ConfigError(f"{source}: 'log.level' must be one of {', '.join(_LOG_LEVELS)}")
    if settings.format not in _LOG_FORMATS:
        raise ConfigError(f"{source}: 'log.format' must be one of {', '.join(_LOG_FORMATS)}")
    return settings


def _positive(cls: Any, table: dict[str, Any], where: str, source: str) -> Any:
    """A settings table whose every value must be positive."""
    settings = _dataclass_from(cls, table, where, source)
    _check_positive(settings, where, source)
    return settings


def _check_positive(
    settings: Any, where: str, source: str, keys: tuple[str, ...] | None = None
) -> None:
    """ConfigError unless ``keys`` of ``settings`` (all its fields if None) are positive."""
    try:
        check_positive(settings, where, keys)
    except SettingsError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _rule(base: ChannelRule, table: dict[str, Any], where: str, source: str) -> ChannelRule:
    rule: ChannelRule = _dataclass_from(ChannelRule, table, where, source, base=base)
    if rule.history_size < 0:
        raise ConfigError(f"{source}: '{where}.history_size' must not be negative")
    if rule.history_ttl <= 0:
        raise ConfigError(f"{source}: '{where}.history_ttl' must be positive")
    return rule


def _table(raw: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{name}' must be a table")
    return value


def _dataclass_from(
    cls: Any, table: dict[str, Any], where: str, source: str, base: Any = None
) -> Any:
    try:
        values = scalars(table, where, kinds_of(cls))
    except SettingsError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return replace(base, **values) if base is not None else cls(**values)


def _typed(name: str, value: Any, kind: type, source: str) -> Any:
    try:
        return typed(name, value, kind)
    except SettingsError as exc:
        raise ConfigError(f"{source}: {exc}") from None
