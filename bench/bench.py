#!/usr/bin/env python3
"""Benchmark for pulse: what a node costs and how fast the cluster converges,
beside the recipe's Elixir node, beside Serf (HashiCorp's gossip membership
agent, at its defaults) and beside the floor (examples/floor.rs, a bare
ping-pong over loopback TCP), all measured in the same run.

Run from the repository root:

    python3 bench/bench.py                       # N = 2, 11, 50, 100, 150 (+ Elixir at 2, 11)
    python3 bench/bench.py --sizes 2,11 --out /tmp/bench.json
    python3 bench/bench.py --smoke               # CI: N = 11 only (+ Serf), short windows,
                                                 # and a short S3 check at N = 3

It builds the static musl binary (`cargo build --release --target
x86_64-unknown-linux-musl`, the one the image ships; the glibc release build
when the musl target is missing) and the floor example the same way, starts
real nodes on their own loopback addresses (127.0.0.2, 127.0.0.3, ...),
prints a table with each figure next to its target, and writes every figure
to bench/results.json, the table to bench/results.txt and the plot to
bench/results.png (a smoke run writes them under target/bench-smoke/; --out
puts them beside the JSON path given).

Every target is a ratio of a pulse figure to the same figure of the floor,
of Serf or of the recipe's node measured in the same run. pulse is also
run with peers from DNS and from S3 (a Garage server on 127.0.0.1, every
request counted at a proxy in front of it), beside the directory's figures.

Exit status: 0 when every measurement could be taken, whatever the figures;
1 when the benchmark itself broke (a node never printed a status line, the
cluster never converged, a node was never detected down, ...; also serf or
garage missing under PULSE_REQUIRE_EXTERNAL=1); 2 for bad usage. Missed
targets never change the exit status.

Only the Python 3 standard library is used for measuring; the plot needs
matplotlib and is skipped (with a note) without it. All traffic stays on
127.0.0.0/8. Every process started here runs in its own session and is
killed with its process group on exit, Ctrl-C or failure.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import floor
import garage
import plot
from build import ensure_binary, ensure_floor, raise_limits, sizes
from common import PROCS, REPO, BenchError, log, shown
from lines import Reader
from phases import scenario
from report import render
from runtimes import ElixirRuntime, PulseDnsRuntime, PulseRuntime, PulseS3Runtime
from serf import SerfRuntime

# Serf at about 15 MiB an agent: the default sizes up to this one.
SERF_MAX_DEFAULT = 150

# The smoke run's S3 check: a few nodes, a period of one interval, and only
# the phases up to the steady window (CI's time is precious).
SMOKE_S3_SIZE = 3
SMOKE_S3_PHASES = ("start", "steady", "window")


class Opts:
    """What the command line asked for."""



def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Benchmark pulse nodes on this host, beside the recipe's Elixir node, "
                    "Serf and the floor.",
        epilog="Exit status: 0 measured (targets may be missed), 1 the benchmark broke, 2 usage.")
    ap.add_argument("--sizes", default="2,11,50,100,150", help="cluster sizes N for pulse")
    ap.add_argument("--elixir-sizes", default="2,11",
                    help="sizes for the Elixir recipe node ('' to skip; skipped when elixir "
                         "is missing)")
    ap.add_argument("--serf-sizes", default=None,
                    help="sizes for Serf agents ('' to skip; skipped when serf is missing) "
                         f"[the --sizes up to {SERF_MAX_DEFAULT}]")
    ap.add_argument("--dns-sizes", default="11,50",
                    help="sizes for pulse with peers from DNS (--registry dns:NAME) instead "
                         "of the directory ('' to skip)")
    ap.add_argument("--s3-sizes", default="11,50",
                    help="sizes for pulse with peers from S3 (--registry s3://..., a Garage "
                         "server on 127.0.0.1; '' to skip; skipped when garage is missing) "
                         f"[{SMOKE_S3_SIZE} with --smoke, up to the steady window only]")
    ap.add_argument("--s3-periods", default="10000,1000",
                    help="registry periods (ms) of the S3 runs, each at every --s3-sizes; "
                         "10000 is pulse's default [the interval with --smoke]")
    ap.add_argument("--interval", type=int, default=1000, dest="interval_ms",
                    help="interval in ms")
    ap.add_argument("--window", type=float, default=None, dest="window_s",
                    help="steady measurement window in seconds [10; 3 with --smoke]")
    ap.add_argument("--hung-rounds", type=int, default=None,
                    help="status lines per node measured with the hung peer [6; 4 with --smoke]")
    ap.add_argument("--out", default=None,
                    help="JSON output path; the .txt table and .png plot go beside it "
                         "[bench/results.json; target/bench-smoke/results.json with --smoke]")
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke run: N=11 only, Serf when installed, no Elixir, short "
                         "windows, no musl build; S3 at N=3 up to the steady window")
    ap.add_argument("--no-floor", action="store_true", help="do not measure the floor")
    ap.add_argument("--binary", help="use this pulse binary instead of building one")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run cargo when the binaries exist; skip the musl build")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, registry)")
    a = ap.parse_args(argv)

    def sizes_of(text):
        try:
            v = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            ap.error(f"bad size list: {text!r}")
        if any(x < 2 or x > 250 for x in v):
            ap.error("sizes must be between 2 and 250")
        return v

    if not 100 <= a.interval_ms <= 15000:
        ap.error("--interval must be between 100 and 15000")
    opts = Opts()
    opts.smoke = a.smoke
    opts.sizes = [11] if a.smoke else sizes_of(a.sizes)
    opts.elixir_sizes = [] if a.smoke else sizes_of(a.elixir_sizes)
    opts.dns_sizes = [] if a.smoke else sizes_of(a.dns_sizes)
    opts.s3_sizes = [SMOKE_S3_SIZE] if a.smoke else sizes_of(a.s3_sizes)
    try:
        periods = [int(x) for x in a.s3_periods.split(",") if x.strip()]
    except ValueError:
        ap.error(f"bad period list: {a.s3_periods!r}")
    opts.s3_periods = [a.interval_ms] if a.smoke else periods
    if any(p < a.interval_ms for p in opts.s3_periods):
        ap.error("--s3-periods: a registry period is at least the interval")
    if opts.s3_sizes and not opts.s3_periods:
        ap.error("--s3-periods: at least one period")
    if a.smoke:
        opts.serf_sizes = [11]
    elif a.serf_sizes is None:
        opts.serf_sizes = [n for n in opts.sizes if n <= SERF_MAX_DEFAULT]
    else:
        opts.serf_sizes = sizes_of(a.serf_sizes)
    if any(n > 49 for n in opts.elixir_sizes):
        # The recipe logs `inspect(list)`, which shows at most 50 entries;
        # the joiner makes N + 1.
        ap.error("--elixir-sizes: at most 49 (the recipe's status line shows 50 entries)")
    opts.interval_ms = a.interval_ms
    opts.window_s = a.window_s or (3.0 if a.smoke else 10.0)
    opts.settle_rounds = 1 if a.smoke else 2
    opts.hung_rounds = a.hung_rounds or (4 if a.smoke else 6)
    # A smoke run never overwrites the committed figures of a full run.
    default_out = REPO / ("target/bench-smoke" if a.smoke else "bench") / "results.json"
    opts.out = Path(a.out) if a.out else default_out
    opts.floor = not a.no_floor
    opts.binary = a.binary
    opts.no_build = a.no_build
    opts.keep = a.keep
    opts.argv = argv
    return opts


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def all_sizes(opts):
    return sorted(set(opts.sizes) | set(opts.elixir_sizes) | set(opts.dns_sizes)
                  | set(opts.serf_sizes) | set(opts.s3_sizes))


def plan_runs(opts, have_floor):
    """(kind, N) in the order they run: for each N pulse, the floor and
    Serf one right after the other so all see the same machine, then pulse
    with peers from DNS and from S3 (each period); the Elixir node last."""
    plan = []
    for n in all_sizes(opts):
        if n in opts.sizes:
            plan.append(("pulse", n))
        if have_floor and (n in opts.sizes or n in opts.serf_sizes or n in opts.dns_sizes
                           or n in opts.elixir_sizes):
            plan.append(("floor", n))
        if n in opts.serf_sizes:
            plan.append(("serf", n))
        if n in opts.dns_sizes:
            plan.append(("pulse-dns", n))
        if n in opts.s3_sizes:
            plan += [(("pulse-s3", p), n) for p in opts.s3_periods]
    return plan + [("elixir", n) for n in opts.elixir_sizes]


def measure_s3(opts, binary, garage_bin, period, n, reader, base_dir, octet):
    """pulse with peers from S3 at one period: a fresh Garage for the run,
    stopped after it, so no store idles beside the other runs."""
    rt = PulseS3Runtime(binary, opts.interval_ms, period, garage_bin, octet)
    try:
        rt.setup(base_dir / f"garage-{rt.label}-{n}")
    except BenchError as e:
        log(f"{rt.label} N={n}: garage setup broke: {e}")
        rt.teardown()
        return {"runtime": rt.label, "n": n, "interval_ms": opts.interval_ms,
                "registry_period_ms": period, "errors": [f"garage setup: {e}"]}
    try:
        r = scenario(rt, n, opts, reader, base_dir,
                     only=SMOKE_S3_PHASES if opts.smoke else None)
    finally:
        rt.teardown()
    r["registry_period_ms"] = period
    r["ttl_ms"] = rt.ttl_s * 1000.0
    r["window_s"] = rt.window_s(opts)
    return r


def measure_all(opts, binary, floor_bin, serf_bin, garage_bin, reader, base_dir, broken):
    """Every run: the floor's tight loop first, then plan_runs. Returns
    (runs, the tight-loop floor)."""
    results, tight = [], None
    if floor_bin:
        tight = floor.measure(floor_bin, 1, 0, min(opts.window_s, 3.0), base_dir)
        broken += [f"floor tight loop: {e}" for e in tight["errors"]]
    pulse_rt = PulseRuntime(binary, opts.interval_ms)
    serf_rt = SerfRuntime(serf_bin) if serf_bin else None
    dns_rt = None
    ex = None
    for kind, n in plan_runs(opts, floor_bin is not None):
        if isinstance(kind, tuple):
            period = kind[1]
            # Each period on its own addresses (127.0.5.x, 127.0.6.x, ...).
            octet = 5 + opts.s3_periods.index(period)
            r = measure_s3(opts, binary, garage_bin, period, n, reader, base_dir, octet)
        elif kind == "floor":
            r = floor.measure(floor_bin, n, opts.interval_ms, opts.window_s, base_dir)
        elif kind == "pulse":
            r = scenario(pulse_rt, n, opts, reader, base_dir)
        elif kind == "serf":
            r = scenario(serf_rt, n, opts, reader, base_dir)
        elif kind == "pulse-dns":
            if dns_rt is None:
                dns_rt = PulseDnsRuntime(binary, opts.interval_ms)
                dns_rt.setup(base_dir)
            r = scenario(dns_rt, n, opts, reader, base_dir)
        else:
            if ex is None:
                ex = ElixirRuntime(opts.interval_ms)
                try:
                    ex.setup(base_dir)
                except BenchError as e:
                    log(f"elixir setup broke: {e}")
                    broken.append(f"elixir setup: {e}")
                    break
            r = scenario(ex, n, opts, reader, base_dir)
        results.append(r)
        broken += [f"{r['runtime']} N={n}: {e}" for e in r["errors"]]
    if ex is not None:
        ex.teardown()
    if dns_rt is not None:
        dns_rt.teardown()
    return results, tight


def write_outputs(opts, doc, table):
    """The JSON, the table as text and the plot, side by side."""
    out = opts.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    txt, png = out.with_suffix(".txt"), out.with_suffix(".png")
    txt.write_text("\n".join(table).lstrip("\n") + "\n")
    print(f"\nfigures written to {shown(out)}, the table to {shown(txt)}")
    why = plot.draw(doc, png)
    print(f"plot skipped: {why}" if why else f"plot written to {shown(png)}")


def main(argv):
    opts = parse_args(argv)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    started = time.time()
    base_dir = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    reader = None
    results, tight, broken = [], None, []
    size_info = None
    header = []
    try:
        binary = ensure_binary(opts)
        floor_bin = ensure_floor(opts, binary) if opts.floor else None
        size_info = sizes(opts, binary)
        limit_notes = raise_limits(max(all_sizes(opts)))
        elixir_ok = bool(shutil.which("elixir") and shutil.which("mix") and shutil.which("epmd"))
        serf_bin = shutil.which("serf") if opts.serf_sizes else None
        garage_bin = garage.find() if opts.s3_sizes else None
        header = [
            f"pulse benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}  host {platform.node()}, "
            f"{os.cpu_count()} cores, kernel {platform.release()}",
            f"command: python3 bench/bench.py {' '.join(argv)}".rstrip(),
            f"binary: {shown(binary)}" + (f"; floor: {shown(floor_bin)}" if floor_bin else ""),
            "limits: " + "; ".join(limit_notes),
            f"window {opts.window_s:.0f} s steady, {opts.hung_rounds} rounds with the hung peer; "
            f"load average at start {os.getloadavg()[0]:.2f}",
        ]
        if opts.elixir_sizes and not elixir_ok:
            header.append("elixir: not installed, Elixir comparison skipped")
            opts.elixir_sizes = []
        if serf_bin:
            header.append(f"serf: {SerfRuntime.version(serf_bin)} ({serf_bin}), lan profile, "
                          f"N = {', '.join(map(str, opts.serf_sizes))}")
        elif opts.serf_sizes:
            header.append("SERF SKIPPED: serf is not installed (scripts/install-deps.sh "
                          "installs Debian's serf); no Serf column, no target against Serf")
            if os.environ.get("PULSE_REQUIRE_EXTERNAL") == "1":
                broken.append("serf is not installed and PULSE_REQUIRE_EXTERNAL=1")
            opts.serf_sizes = []
        if garage_bin:
            header.append(
                f"s3: {garage.version(garage_bin)} ({garage_bin}) on 127.0.0.1, requests counted "
                f"at a proxy; N = {', '.join(map(str, opts.s3_sizes))}, registry period "
                f"{', '.join(f'{p} ms' for p in opts.s3_periods)}"
                + (f", phases {', '.join(SMOKE_S3_PHASES)} only" if opts.smoke else ""))
        elif opts.s3_sizes:
            header.append("S3 SKIPPED: garage is not installed (scripts/install-deps.sh builds "
                          "it into /opt/garage, or set PULSE_GARAGE); no S3 rows")
            if os.environ.get("PULSE_REQUIRE_EXTERNAL") == "1":
                broken.append("garage is not installed and PULSE_REQUIRE_EXTERNAL=1")
            opts.s3_sizes = []
        for line in header:
            log(line)
        reader = Reader()
        results, tight = measure_all(opts, binary, floor_bin, serf_bin, garage_bin, reader,
                                     base_dir, broken)
    except BenchError as e:
        log(f"BROKE: {e}")
        broken.append(str(e))
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        return 130
    finally:
        PROCS.cleanup()
        if reader:
            reader.close()
        if not opts.keep:
            shutil.rmtree(base_dir, ignore_errors=True)
        else:
            log(f"run directory kept: {base_dir}")

    table, misses, target_results = render(results, tight, opts.interval_ms, size_info, header)
    print("\n".join(table), flush=True)
    doc = {
        "meta": {
            "command": ["python3", "bench/bench.py", *argv],
            "started_unix": started,
            "duration_s": time.time() - started,
            "host": platform.node(),
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "interval_ms": opts.interval_ms,
            "window_s": opts.window_s,
            "hung_rounds": opts.hung_rounds,
            "smoke": opts.smoke,
            "serf_sizes": opts.serf_sizes,
            "s3_sizes": opts.s3_sizes,
            "s3_periods_ms": opts.s3_periods,
            "header": header,
        },
        "targets": target_results,
        "sizes": size_info,
        "runs": results,
        "floor_tight": tight,
        "missed_targets": misses,
        "broken": broken,
    }
    write_outputs(opts, doc, table)
    if broken:
        print("BENCHMARK BROKEN:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        PROCS.cleanup()
