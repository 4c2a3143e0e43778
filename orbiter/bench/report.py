"""What a bench run leaves behind: a summary table, a JSON file, a self-contained HTML plot.

The plot (inline SVG, no scripts, no dependencies) shows each target's
latency over the run (p50, p99, max per 100 ms window) and the
distribution of all latencies (a CDF on a log axis).
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Sequence
from typing import Any

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _user_pct(run: dict[str, Any]) -> float | None:
    """The share of the server's CPU time spent in user space (the rest is the kernel's)."""
    server = run.get("server", {})
    if not server.get("cpu_s") or "cpu_user_s" not in server:
        return None
    return 100.0 * float(server["cpu_user_s"]) / float(server["cpu_s"])


def _busiest_share(run: dict[str, Any]) -> float | None:
    """The share of the connections the busiest process held (``--workers N``: the kernel's
    spread over the workers); None unless several processes held some."""
    held: list[int] = run.get("server", {}).get("connections_by_process") or []
    if len(held) < 2:
        return None
    return 100.0 * max(held) / sum(held)


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeated runs of one scenario against one target."""

    def med(get: Any) -> Any:
        values = [v for v in (get(r) for r in runs) if v is not None]
        return statistics.median(values) if values else None

    def server(key: str) -> Any:
        def get(r: dict[str, Any]) -> Any:
            return r.get("server", {}).get(key)

        return get

    out = {
        "target": runs[0]["target"]["name"],
        "runs": len(runs),
        "deliveries_per_s": med(lambda r: r["deliveries_per_s"]),
        "publish_per_s": med(lambda r: r["publish_per_s"]),
        "p50_ms": med(lambda r: r["latency_ms"]["p50"]),
        "p99_ms": med(lambda r: r["latency_ms"]["p99"]),
        "max_ms": med(lambda r: r["latency_ms"]["max"]),
        "delivered_pct": med(
            lambda r: (
                100.0 * r["deliveries"] / r["expected_deliveries"]
                if r["expected_deliveries"]
                else None
            )
        ),
        "lost": med(lambda r: r["lost"]),
        "duplicates": med(lambda r: r["duplicates"]),
        "cpu_s_per_1m_deliveries": med(server("cpu_s_per_million_deliveries")),
        "cpu_s_per_1m_publishes": med(server("cpu_s_per_million_publishes")),
        "cpu_user_pct": med(_user_pct),
        "rss_kib_per_subscriber": med(server("rss_per_subscriber_kib")),
        "subscribers_failed": med(lambda r: r["subscribers_failed"]),
    }
    busiest = med(_busiest_share)
    if busiest is not None:  # a server whose connections several processes hold
        out["busiest_process_pct"] = busiest
    if "connects_per_s" in runs[0]:
        out["connects_per_s"] = med(lambda r: r["connects_per_s"])
        out["cpu_ms_per_connect"] = med(server("cpu_ms_per_connect"))
        out["churn_failures"] = med(lambda r: r["churn_failures"])
    if "keeps_up" in runs[0]:
        out["keeps_up"] = sum(bool(r["keeps_up"]) for r in runs) * 2 > len(runs)
    return out


COLUMNS = [
    ("target", "target"),
    ("runs", "runs"),
    ("deliveries_per_s", "deliveries/s"),
    ("publish_per_s", "publish/s"),
    ("cpu_s_per_1m_deliveries", "CPU s/1M deliveries"),
    ("cpu_s_per_1m_publishes", "CPU s/1M publishes"),
    ("cpu_user_pct", "user CPU %"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("keeps_up", "keeps up"),
    ("delivered_pct", "delivered %"),
    ("duplicates", "dups"),
    ("rss_kib_per_subscriber", "RSS KiB/conn"),
    ("busiest_process_pct", "busiest process % of conns"),
    ("connects_per_s", "connects/s"),
    ("cpu_ms_per_connect", "CPU ms/connect"),
    ("churn_failures", "refused"),
]


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    cols = [(k, t) for k, t in COLUMNS if any(k in s for s in summaries)]
    lines = ["| " + " | ".join(t for _, t in cols) + " |", "|" + "---|" * len(cols)]
    for s in summaries:
        lines.append("| " + " | ".join(_fmt(s.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines)


def _polyline(points: list[tuple[float, float]], color: str, dash: str = "") -> str:
    if not points:
        return ""
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{extra} points="{pts}"/>'


def _log_y(value_ms: float, lo: float, hi: float, top: float, height: float) -> float:
    v = min(max(value_ms, lo), hi)
    return (
        top + height - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * height
    )


def html_plot(title: str, runs: Sequence[dict[str, Any]]) -> str:
    """One page: latency over time and the latency CDF of each run (first run per target)."""
    firsts: dict[str, dict[str, Any]] = {}
    for r in runs:
        firsts.setdefault(r["target"]["name"], r)
    all_ms = [w[4] / 1000 for r in firsts.values() for w in r["windows"]] or [1.0]
    lo, hi = 0.01, max(10.0, max(all_ms) * 1.2)
    tmax = max((w[0] / 1e6 for r in firsts.values() for w in r["windows"]), default=1.0) or 1.0
    W, H, L, T = 900, 320, 60, 20
    parts = [
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>",
        "<style>body{font:14px sans-serif;margin:20px}text{font:11px sans-serif}</style>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Latency over time (per 100 ms window: solid p99, dashed p50, dotted max)</h2>",
        f'<svg width="{W + L + 20}" height="{H + 60}" xmlns="http://www.w3.org/2000/svg">',
    ]
    for ms in (0.1, 1, 10, 100, 1000, 10000, 100000):
        if lo <= ms <= hi:
            y = _log_y(ms, lo, hi, T, H)
            parts.append(f'<line x1="{L}" x2="{L + W}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            parts.append(f'<text x="5" y="{y + 4:.1f}">{ms:g} ms</text>')
    parts.append(f'<text x="{L + W // 2}" y="{T + H + 30}">seconds since the first publish</text>')
    for i in range(6):
        x = L + W * i / 5
        parts.append(f'<text x="{x:.0f}" y="{T + H + 15}">{tmax * i / 5:.1f}</text>')
    for n, (name, r) in enumerate(firsts.items()):
        c = COLORS[n % len(COLORS)]
        win = r["windows"]
        first_t = win[0][0] / 1e6 if win else 0

        def xy(w: list[int], k: int, first_t: float = first_t) -> tuple[float, float]:
            x = L + (w[0] / 1e6 - first_t) / tmax * W
            return x, _log_y(w[k] / 1000, lo, hi, T, H)

        parts.append(_polyline([xy(w, 3) for w in win], c))
        parts.append(_polyline([xy(w, 2) for w in win], c, "6,3"))
        parts.append(_polyline([xy(w, 4) for w in win], c, "1,3"))
        parts.append(
            f'<text x="{L + 10}" y="{T + 14 + 14 * n}" fill="{c}">{html.escape(name)}</text>'
        )
    parts.append("</svg><h2>Latency distribution (CDF, all deliveries)</h2>")
    parts.append(f'<svg width="{W + L + 20}" height="{H + 60}" xmlns="http://www.w3.org/2000/svg">')
    hi2 = max(10.0, max((r["latency_ms"]["max"] for r in firsts.values()), default=10.0) * 1.2)
    for ms in (0.1, 1, 10, 100, 1000, 10000, 100000):
        if lo <= ms <= hi2:
            x = L + (math.log10(ms) - math.log10(lo)) / (math.log10(hi2) - math.log10(lo)) * W
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{T + H}" stroke="#ddd"/>')
            parts.append(f'<text x="{x - 10:.1f}" y="{T + H + 15}">{ms:g} ms</text>')
    for frac in (0, 0.5, 0.9, 0.99, 1):
        y = T + H - frac * H
        parts.append(f'<text x="5" y="{y + 4:.1f}">{frac:g}</text>')
    for n, (name, r) in enumerate(firsts.items()):
        c = COLORS[n % len(COLORS)]
        hist = sorted(r["histogram"], key=lambda b: b[0])
        total = sum(b[2] for b in hist) or 1
        seen = 0
        pts = []
        for _low, high, count in hist:
            seen += count
            ms = max(high / 1000, lo)
            x = L + (math.log10(ms) - math.log10(lo)) / (math.log10(hi2) - math.log10(lo)) * W
            pts.append((x, T + H - seen / total * H))
        parts.append(_polyline(pts, c))
        parts.append(
            f'<text x="{L + 10}" y="{T + 14 + 14 * n}" fill="{c}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
