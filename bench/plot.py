#!/usr/bin/env python3
"""Draws the main figures of a benchmark run against N: CPU per node per
second and per ping, RSS per node, startup, the cores all nodes use, and the
time until every node knows of one more node, a kill -9 and a graceful
leave; pulse (also with peers from S3), Serf, the recipe's Elixir node and
the floor, with each target (a ratio to one of them) drawn where it lands
for pulse.

    python3 bench/plot.py bench/results.json     # writes bench/results.png

The benchmark calls draw() itself after a run. Needs matplotlib
(scripts/install-deps.sh installs Debian's python3-matplotlib)."""

import json
import sys
from pathlib import Path

from report import FLOOR_ROWS, TARGETS, rows

STYLE = {  # runtime -> (label, colour, marker, line style)
    "pulse": ("pulse", "#1f77b4", "o", "-"),
    "serf": ("Serf (lan profile)", "#2ca02c", "D", "-"),
    "elixir": ("recipe's Elixir node", "#d62728", "s", "-"),
    "floor": ("floor (bare ping-pong on K = N links)", "#7f7f7f", "^", "--"),
    "pulse-s3": ("pulse, peers from S3 (registry period 10 s)", "#9467bd", "v", ":"),
}

PANELS = [  # (title, y label, the table's row drawn, the row whose targets are drawn)
    ("CPU per node per second", "µs (schedstat)", "CPU/node/s (us, schedstat)", None),
    ("CPU per ping", "µs (schedstat)", None, None),
    ("RSS per node", "MiB, median", "RSS median (MiB)", None),
    ("startup (exec → first status line)", "ms, median (bar up to p95)",
     "startup median (ms)", "startup p95 (ms)"),
    ("cores, all nodes", "cores (schedstat)", "cores, all nodes (schedstat)", None),
    ("one more node known by every node", "ms", "+1 node -> known by all (ms)", None),
    ("kill -9 known by every node", "ms", "kill -9 -> known by all (ms)", None),
    ("graceful leave known by every node", "ms", "leave -> known by all (ms)", None),
]


def ping_us(r):
    cpu = r.get("cpu") or {}
    if "per_ping_us_schedstat" in cpu:
        return cpu["per_ping_us_schedstat"]
    # Runs from before the per-ping figure: a round is N pings.
    per_round = cpu.get("per_node_per_round_us_schedstat", {}).get("mean")
    return None if per_round is None else per_round / r["n"]


def short(v):
    """A figure as printed beside its point: no exponents."""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2g}"


def series(doc, runtime, getter):
    pts = sorted((r["n"], getter(r)) for r in doc.get("runs", []) if r["runtime"] == runtime)
    return [(n, v) for n, v in pts if v is not None]


def target_points(doc, label, getters):
    """[(N, the most pulse's figure may be)]: at each N, the tightest of the
    row's ratio targets times the reference's figure measured there."""
    by = {(r["runtime"], r["n"]): r for r in doc.get("runs", [])}
    out = {}
    for row, ref, most, at in TARGETS:
        if row != label:
            continue
        for (rt, n), r in by.items():
            if rt != ref or (at is not None and n not in at) or ("pulse", n) not in by:
                continue
            v = getters[row](r)
            if v is not None:
                out[n] = min(out.get(n, float("inf")), most * v)
    return sorted(out.items())


def draw(doc, path):
    """Writes the figure to `path` (PNG or SVG by its suffix). Returns None,
    or why it could not (matplotlib missing)."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (scripts/install-deps.sh installs it)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    meta = doc.get("meta", {})
    fig, axes = plt.subplots(2, 4, figsize=(19, 9))
    ns = sorted({r["n"] for r in doc.get("runs", [])})
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    getters = {label: g for label, g, _f in rows()}
    for ax, (title, unit, row, target_row) in zip(axes.flat, PANELS):
        getter = getters[row] if row else ping_us
        for runtime, (label, colour, marker, ls) in STYLE.items():
            if runtime == "floor" and row is not None and row not in FLOOR_ROWS:
                continue  # one process, not a cluster: only its costs compare
            pts = series(doc, runtime, getter)
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, ls, color=colour, marker=marker, label=label)
            for x, y in pts:
                ax.annotate(short(y), (x, y), textcoords="offset points", xytext=(4, 5),
                            fontsize=7, color=colour)
            if title.startswith("startup"):
                p95 = [(r["n"], r["startup_ms"]["p95"]) for r in doc["runs"]
                       if r["runtime"] == runtime and (r.get("startup_ms") or {}).get("p95")]
                for x, y in p95:
                    ax.plot([x, x], [dict(pts).get(x, y), y], color=colour, lw=1, alpha=0.6)
                    ax.plot([x], [y], "_", color=colour, ms=10)
        goal = target_points(doc, target_row or row, getters) if row else []
        if goal:
            gx, gy = zip(*goal)
            ax.plot(gx, gy, "_", color="black", ms=16, mew=2,
                    label="target for pulse (a ratio to a reference, at most)")
        ax.set_title(title)
        ax.set_xlabel("N (nodes in the cluster)")
        ax.set_ylabel(unit)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ns)
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())
        if ns:
            # Room for the value labels right of the last point and above the top one.
            ax.set_xlim(ns[0] / 1.2, ns[-1] * 1.35)
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi * 1.4)
        ax.grid(True, which="both", alpha=0.3)
    # One legend for the four panels, below them, so none hides a point.
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=5, fontsize=9,
               frameon=False)
    fig.suptitle(f"pulse benchmark, interval {meta.get('interval_ms', '?')} ms, "
                 f"{meta.get('cores', '?')} cores ({meta.get('host', '?')})", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def main(argv):
    if len(argv) not in (1, 2):
        print("usage: plot.py RESULTS.json [OUT.png|OUT.svg]", file=sys.stderr)
        return 2
    src = Path(argv[0])
    out = Path(argv[1]) if len(argv) == 2 else src.with_suffix(".png")
    try:
        doc = json.loads(src.read_text())
    except (OSError, ValueError) as e:
        print(f"plot: cannot read {src}: {e}", file=sys.stderr)
        return 1
    why = draw(doc, out)
    if why:
        print(f"plot: {why}", file=sys.stderr)
        return 1
    print(f"plot written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
