"""Draws a section of bench/RESULTS.md as bench/NAME.png, with matplotlib:
one panel of horizontal bars per measure (throughput, memory, latency
percentiles, ...), one bar per server or case, the numbers read from the
section's tables as the script that wrote it left them.

Usage: python3 bench/chart.py NAME [NAME...]   (NAME: hello, sleep, ...)
"""

import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# For each section: panels of (table index, label columns, value columns,
# panel title). Columns are matched by the start of their header.
PANELS = {
    "hello": [
        (0, ["server", "WASI"], ["req/s"], "requests/s (median)"),
        (0, ["server", "WASI"], ["server CPU per request"], "server CPU per request (µs)"),
        (0, ["server", "WASI"], ["p50", "p99"], "latency (ms)"),
    ],
    "spin": [
        (0, ["server", "spinning requests"], ["/hello req/s"], "/hello requests/s"),
        (0, ["server", "spinning requests"], ["p50", "p99"], "/hello latency (ms)"),
        (1, ["blog server", "logging in at once"], ["/ req/s"], "blog / requests/s while logins hash"),
        (1, ["blog server", "logging in at once"], ["p50", "p99"], "blog / latency (ms)"),
    ],
    "sleep": [
        (0, ["server"], ["succeeded"], "requests succeeded"),
        (0, ["server"], ["RSS per request"], "RSS per waiting request (KiB)"),
        (0, ["server"], ["p50", "p99"], "latency (ms)"),
    ],
    "websocket": [
        (0, ["server"], ["RSS per session"], "RSS per session (KiB)"),
        (0, ["server"], ["server CPU"], "server CPU for the run (s)"),
        (0, ["server"], ["echo p50", "echo p99"], "echo latency (ms)"),
    ],
    "websocket-idle": [
        (0, ["server"], ["per session at 5 s", "per session at 35 s"], "RSS per idle chat session (KiB)"),
        (0, ["server"], ["delivery p50", "p99", "max"], "one post to every session (ms)"),
    ],
    "kv": [
        (0, ["server and route"], ["req/s"], "requests/s (median)"),
        (0, ["server and route"], ["p50", "p99"], "latency (ms)"),
        (1, ["server", "/hello"], ["p99"], "/hello p99 alone and beside a busy store (ms)"),
    ],
    "kv-fanout": [
        (0, ["sessions"], ["delivery p50", "p99", "max"], "delivery of one message to every session (ms)"),
    ],
    "deploy": [
        (0, ["run"], ["req/s"], "requests/s"),
        (0, ["run"], ["p99"], "p99 (ms)"),
        (1, ["deploy"], ["PUT answered", "first answer"], "per deploy (ms)"),
    ],
    "outbound": [
        (0, ["server"], ["req/s"], "requests/s (median)"),
        (0, ["server"], ["server CPU per request"], "server CPU per request (µs)"),
        (0, ["server"], ["p50", "p99"], "latency (ms)"),
    ],
}


def section(name):
    text = open(os.path.join(HERE, "RESULTS.md")).read()
    found = re.search(f"<!-- {re.escape(name)}:start -->(.*?)<!-- {re.escape(name)}:end -->", text, re.S)
    if not found:
        sys.exit(f"chart: no section {name} in bench/RESULTS.md")
    return found.group(1)


def tables(text):
    """Each markdown table in text as (header cells, rows of cells)."""
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = (cells, [])
                found.append(current)
            elif not set("".join(cells)) <= set("-: "):
                current[1].append(cells)
        else:
            current = None
    return found


def number(cell):
    """The value of a cell in the unit its panel uses (latencies in ms);
    None for a cell with no number."""
    cell = cell.replace(",", "").strip()
    match = re.match(r"^(-?[0-9.]+)\s*(us|µs|ms|s|KiB|MiB|x)?", cell)
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value


def shown(n):
    if n is None:
        return "n/a"
    return f"{n:,.0f}" if abs(n) >= 100 else f"{n:.3g}"


def column(header, start):
    for i, name in enumerate(header):
        if name.startswith(start):
            return i
    sys.exit(f"chart: no column {start!r} in {header}")


def draw(name):
    found = tables(section(name))
    panels = PANELS[name]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 0.5 + 0.45 * max(len(found[p[0]][1]) for p in panels) + 1.2), squeeze=False)
    for ax, (index, labels, values, title) in zip(axes[0], panels):
        header, rows = found[index]
        names = [" ".join(row[column(header, l)] for l in labels if row[column(header, l)] != "-") for row in rows]
        width = 0.8 / len(values)
        for k, value in enumerate(values):
            numbers = [number(row[column(header, value)]) for row in rows]
            positions = [i + (k - (len(values) - 1) / 2) * width for i in range(len(rows))]
            bars = ax.barh(positions, [n or 0 for n in numbers], height=width, label=value)
            ax.bar_label(bars, labels=[shown(n) for n in numbers], fontsize=7, padding=2)
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.margins(x=0.25)
        ax.tick_params(axis="x", labelsize=7)
        if len(values) > 1:
            ax.legend(fontsize=7, loc="best")
    heading = re.search(r"^## (.*)$", section(name), re.M).group(1)
    figure.suptitle(f"{heading} (bench/RESULTS.md)", fontsize=11)
    figure.tight_layout()
    path = os.path.join(HERE, f"{name}.png")
    figure.savefig(path, dpi=100)
    print(f"chart: wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    for name in sys.argv[1:] or PANELS:
        draw(name)
