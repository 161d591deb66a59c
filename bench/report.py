"""The targets and the printed tables: pulse against its targets, pulse
beside the recipe's Elixir node, pulse beside the floor. Targets are read,
never asserted: a missed one is marked MISS and listed, nothing more."""

from common import MUSL, MiB


def targets(interval_ms):
    """The targets as stored in the JSON."""
    return {
        "cpu_per_node_per_round_us": "<= 150 at N=2, <= 470 at N=11",
        "elixir_over_pulse_cpu_per_round": ">= 10 at N=11 (Elixir measured in the same run)",
        "cpu_per_ping_us": "<= 40 at N=100 and N=150",
        "cores_all_nodes_at_150": "<= 0.9 at N=150, with every status line all true",
        "convergence_ms": f"<= {interval_ms + 100} (interval + 100 ms)",
        "kill9_detect_ms": f"<= {interval_ms} (one interval)",
        "period_hung_max_ms": f"<= {interval_ms + 100} (interval + 100 ms)",
        "startup_p95_ms": "<= 100",
    }


def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def stat_only(r, v, ticks=50):
    """A figure from utime/stime clock ticks, or None when too few ticks
    were counted for it to mean anything (see the schedstat rows)."""
    return v if (get(r, "cpu", "ticks_counted") or 0) >= ticks else None


def kib_mib(v):
    return None if v is None else v / 1024.0


def split(r):
    """(user %, system %) of the ticks, when at least 20 were counted."""
    u = stat_only(r, get(r, "cpu", "user_pct"), 20)
    return None if u is None else (u, 100.0 - u)


def fmt_split(v):
    return f"{v[0]:.0f}/{v[1]:.0f}"


def cpu_round_target(v, n, r):
    return {2: v <= 150, 11: v <= 470}.get(n)


def cores_target(v, n, r):
    if n < 150:
        return None
    return v <= 0.9 and get(r, "steady_window", "all_true_pct") == 100


def rows(interval_ms):
    """(label, target text, getter(run), format, check(value, n, run) -> True/False/None)."""
    I = interval_ms
    return [
        ("startup median (ms)", "", lambda r: get(r, "startup_ms", "median"), "{:.1f}", None),
        ("startup p95 (ms)", "<= 100", lambda r: get(r, "startup_ms", "p95"), "{:.1f}",
         lambda v, n, r: v <= 100),
        ("startup p95 (ms, node's clock)", "<= 100",
         lambda r: get(r, "startup_stamped_ms", "p95"), "{:.1f}", lambda v, n, r: v <= 100),
        ("RSS median (MiB)", "", lambda r: kib_mib(get(r, "rss_kib", "median")), "{:.2f}", None),
        ("RSS max (MiB)", "", lambda r: kib_mib(get(r, "rss_kib", "max")), "{:.2f}", None),
        ("threads per node (median)", "", lambda r: get(r, "threads", "median"), "{:.0f}", None),
        ("CPU/node/round (us, stat)", "",
         lambda r: stat_only(r, get(r, "cpu", "per_node_per_round_us_stat", "mean")), "{:.0f}",
         None),
        ("CPU/node/round (us, schedstat)", "<=150 N=2, <=470 N=11",
         lambda r: get(r, "cpu", "per_node_per_round_us_schedstat", "mean"), "{:.0f}",
         cpu_round_target),
        ("CPU/node/round, elixir/pulse", ">= 10 (N=11)",
         lambda r: get(r, "vs_elixir", "cpu_per_round"), "{:.1f}",
         lambda v, n, r: (v >= 10) if n == 11 else None),
        ("CPU/ping (us, schedstat)", "<= 40 (N>=100)",
         lambda r: get(r, "cpu", "per_ping_us_schedstat"), "{:.1f}",
         lambda v, n, r: (v <= 40) if n >= 100 else None),
        ("CPU/ping (us, stat)", "",
         lambda r: stat_only(r, get(r, "cpu", "per_ping_us_stat")), "{:.1f}", None),
        ("wake-ups/node/round (schedstat)", "",
         lambda r: get(r, "cpu", "wakeups_per_node_per_round"), "{:.1f}", None),
        ("wake-ups/ping (schedstat)", "", lambda r: get(r, "cpu", "wakeups_per_ping"), "{:.2f}",
         None),
        ("CPU user/system (% of ticks)", "", split, fmt_split, None),
        ("CPU ticks counted (all nodes)", "", lambda r: get(r, "cpu", "ticks_counted"), "{:.0f}",
         None),
        ("cores, all nodes (stat)", "",
         lambda r: stat_only(r, get(r, "cpu", "cores_all_nodes_stat")), "{:.3f}", None),
        ("cores, all nodes (schedstat)", "<= 0.9 all true (N=150)",
         lambda r: get(r, "cpu", "cores_all_nodes_schedstat"), "{:.3f}", cores_target),
        ("cores, machine busy (/proc/stat)", "", lambda r: get(r, "cpu", "cores_machine_busy"),
         "{:.3f}", None),
        ("cores, this harness", "", lambda r: get(r, "cpu", "cores_harness"), "{:.3f}", None),
        ("steady lines all true (%)", "100", lambda r: get(r, "steady_window", "all_true_pct"),
         "{:.1f}", lambda v, n, r: v >= 100),
        ("round gap, steady, mean (ms)", "", lambda r: get(r, "period_baseline_ms", "mean"),
         "{:.1f}", None),
        ("round gap, steady, max (ms)", "", lambda r: get(r, "period_baseline_ms", "max"),
         "{:.1f}", None),
        ("round gap, steady, max (ms, node's clock)", "",
         lambda r: get(r, "period_baseline_stamped_ms", "max"), "{:.1f}", None),
        ("line read late, p95 (ms)", "", lambda r: get(r, "line_lag_ms", "p95"), "{:.1f}",
         None),
        ("line read late, max (ms)", "", lambda r: get(r, "line_lag_ms", "max"), "{:.1f}",
         None),
        ("convergence, +1 node (ms)", f"<= {I + 100}", lambda r: get(r, "convergence_ms"),
         "{:.0f}", lambda v, n, r: v <= I + 100),
        ("convergence, +1 node (ms, node's clock)", f"<= {I + 100}",
         lambda r: get(r, "convergence_stamped_ms"), "{:.0f}", lambda v, n, r: v <= I + 100),
        ("kill -9 -> all false (ms)", f"<= {I}", lambda r: get(r, "kill9_detect_ms"), "{:.0f}",
         lambda v, n, r: v <= I),
        ("kill -9 -> all false (ms, node's clock)", f"<= {I}",
         lambda r: get(r, "kill9_detect_stamped_ms"), "{:.0f}", lambda v, n, r: v <= I),
        ("kill -9 -> expired (ms)", "", lambda r: get(r, "kill9_expire_ms"), "{:.0f}", None),
        ("SIGTERM -> gone (ms)", "", lambda r: get(r, "sigterm_gone_ms"), "{:.0f}", None),
        ("SIGTERM -> exit (ms)", "", lambda r: get(r, "sigterm_exit_ms"), "{:.0f}", None),
        ("hung peer: round gap mean (ms)", "", lambda r: get(r, "period_hung_ms", "mean"),
         "{:.1f}", None),
        ("hung peer: round gap max (ms)", f"<= {I + 100}",
         lambda r: get(r, "period_hung_ms", "max"), "{:.1f}", lambda v, n, r: v <= I + 100),
        ("hung peer: round gap max (ms, node's clock)", f"<= {I + 100}",
         lambda r: get(r, "period_hung_stamped_ms", "max"), "{:.1f}",
         lambda v, n, r: v <= I + 100),
    ]


# Rows that compare a node's costs with the floor's (the floor has no
# cluster, so no startup, convergence or rounds of status lines).
FLOOR_ROWS = ("RSS median (MiB)", "threads per node (median)", "CPU/node/round (us, stat)",
              "CPU/node/round (us, schedstat)", "CPU/ping (us, schedstat)", "CPU/ping (us, stat)",
              "wake-ups/node/round (schedstat)", "wake-ups/ping (schedstat)",
              "CPU user/system (% of ticks)", "CPU ticks counted (all nodes)")

# Rows that make no sense for the DNS comparison (no hung peer there).
NOT_VS_DNS = ("cores, machine busy (/proc/stat)", "cores, this harness",
              "CPU/node/round, elixir/pulse", "hung peer: round gap mean (ms)",
              "hung peer: round gap max (ms)", "hung peer: round gap max (ms, node's clock)")

# Rows that make no sense for the Elixir comparison.
NOT_VS_ELIXIR = ("cores, machine busy (/proc/stat)", "cores, this harness",
                 "CPU/node/round (us, stat)", "cores, all nodes (stat)",
                 "CPU/node/round, elixir/pulse", "CPU ticks counted (all nodes)")


def show(v, fmt):
    if v is None:
        return "n/a"
    return fmt(v) if callable(fmt) else fmt.format(v)


def cell(r, getter, fmt, check, n):
    v = getter(r) if r else None
    if v is None:
        return "n/a", None
    text = show(v, fmt)
    verdict = check(v, n, r) if check else None
    if verdict is True:
        text += " ok"
    elif verdict is False:
        text += " MISS"
    return text, verdict


def link_ratios(results):
    """Stores in each pulse run how it compares with the Elixir node and the
    floor at the same N (so the targets that need both can be read)."""
    by = {(r["runtime"], r["n"]): r for r in results}
    for r in results:
        if r["runtime"] != "pulse":
            continue
        p = get(r, "cpu", "per_node_per_round_us_schedstat", "mean")
        e = get(by.get(("elixir", r["n"])), "cpu", "per_node_per_round_us_schedstat", "mean")
        f = get(by.get(("floor", r["n"])), "cpu", "per_node_per_round_us_schedstat", "mean")
        if p and e:
            r["vs_elixir"] = {"cpu_per_round": e / p}
        if p and f:
            r["vs_floor"] = {"cpu_per_round": p / f}


def pulse_table(pulse, spec, interval_ms):
    out, misses = [], []
    ns = sorted(pulse)
    w0 = max(len(s[0]) for s in spec)
    w1 = max(len("target"), max(len(s[1]) for s in spec))
    widths, cells = [], {}
    for n in ns:
        col = []
        for label, _, g, f, c in spec:
            text, verdict = cell(pulse[n], g, f, c, n)
            col.append(text)
            if verdict is False:
                misses.append(f"{label} at N={n}: {text}")
        cells[n] = col
        widths.append(max(len(f"N={n}"), max(len(t) for t in col)))
    out.append(f"pulse, interval {interval_ms} ms")
    line = f"{'metric':<{w0}}  {'target':<{w1}}" + "".join(
        f"  {f'N={n}':>{w}}" for n, w in zip(ns, widths))
    out.append(line)
    out.append("-" * len(line))
    for i, (label, tgt, *_rest) in enumerate(spec):
        out.append(f"{label:<{w0}}  {tgt:<{w1}}" + "".join(
            f"  {cells[n][i]:>{w}}" for n, w in zip(ns, widths)))
    out += [f"  BROKEN N={r['n']}: {e}" for r in pulse.values() for e in r["errors"]]
    return out, misses


def side_by_side(title, pulse, other, name, spec):
    """One line per metric and N: pulse, the other, and pulse / other."""
    out = ["", f"{title} (ratio = pulse / {name})"]
    w0 = max(len(s[0]) for s in spec)
    hdr = f"{'metric':<{w0}}  {'N':>3}  {'pulse':>12}  {name:>12}  {'ratio':>9}"
    out += [hdr, "-" * len(hdr)]
    for label, _, g, f, _c in spec:
        for n in sorted(other):
            pv = g(pulse.get(n)) if pulse.get(n) else None
            ov = g(other[n])
            ratio = "n/a"
            if isinstance(pv, (int, float)) and isinstance(ov, (int, float)) and ov:
                ratio = f"{pv / ov:.3g}"
            out.append(f"{label:<{w0}}  {n:>3}  {show(pv, f):>12}  {show(ov, f):>12}  {ratio:>9}")
    return out


def tight_line(t):
    if not t or t.get("errors") or "cpu" not in t:
        errs = "; ".join(t.get("errors", [])) if t else "not measured"
        return [f"floor, tight loop: n/a ({errs})"]
    c = t["cpu"]
    sp = split(t)
    return [f"floor, tight loop (1 link, back to back): {c['per_ping_us_schedstat']:.1f} us "
            f"per ping (schedstat), {t['pings_per_s']:.0f} pings/s, user/system "
            f"{fmt_split(sp) if sp else 'n/a'} % of ticks"]


def sizes_lines(size_info):
    out = ["", "sizes"]
    rb = size_info["release_binary"]["bytes"]
    rel = size_info["release_binary"]["path"]
    out.append(f"  measured binary ({rel})    {rb:>10} bytes  ({rb / MiB:.2f} MiB)")
    mb = size_info["musl_binary"].get("bytes")
    if mb is not None:
        st = size_info["musl_binary"].get("static")
        out.append(f"  static musl binary ({MUSL})  {mb:>10} bytes  ({mb / MiB:.2f} MiB)"
                   f"{', static' if st else ', NOT static' if st is False else ''}")
    else:
        out.append(f"  static musl binary  n/a ({size_info['musl_binary'].get('note')})")
    im = size_info["image"]
    if im.get("bytes") is not None:
        out.append(f"  image {im['ref']}  {im['bytes']:>10} bytes  ({im['bytes'] / MiB:.2f} MiB)")
    else:
        out.append(f"  image  n/a ({im.get('note')})")
    return out


def render(results, floor_tight, interval_ms, size_info, header):
    """The whole printed report and the list of missed targets."""
    link_ratios(results)
    pulse = {r["n"]: r for r in results if r["runtime"] == "pulse"}
    elixir = {r["n"]: r for r in results if r["runtime"] == "elixir"}
    floor = {r["n"]: r for r in results if r["runtime"] == "floor"}
    dns = {r["n"]: r for r in results if r["runtime"] == "pulse-dns"}
    spec = rows(interval_ms)
    out, misses = ["", *header, ""], []
    if pulse:
        table, misses = pulse_table(pulse, spec, interval_ms)
        out += table
    if elixir:
        out += side_by_side("pulse vs the recipe's Elixir node", pulse, elixir, "elixir",
                            [s for s in spec if s[0] not in NOT_VS_ELIXIR])
        for r in elixir.values():
            for key in ("kill9_expire_note", "sigterm_gone_note"):
                if key in r:
                    out.append(f"  elixir N={r['n']}: {key.split('_note')[0]}: {r[key]}")
            out += [f"  BROKEN elixir N={r['n']}: {e}" for e in r["errors"]]
    if dns:
        out += side_by_side("pulse with peers from the registry directory vs from DNS "
                            "(--registry dns:NAME, a test DNS server on 127.0.0.1)", pulse, dns,
                            "dns", [s for s in spec if s[0] not in NOT_VS_DNS])
        for r in dns.values():
            out += [f"  BROKEN pulse-dns N={r['n']}: {e}" for e in r["errors"]]
    if floor or floor_tight:
        out += side_by_side(f"pulse vs the floor: K links pinged every {interval_ms} ms "
                            "(K = N)", pulse, floor, "floor",
                            [s for s in spec if s[0] in FLOOR_ROWS])
        out += ["  " + x for x in tight_line(floor_tight)]
        for r in floor.values():
            out += [f"  BROKEN floor K={r['n']}: {e}" for e in r["errors"]]
    if size_info is not None:
        out += sizes_lines(size_info)
    out.append("")
    if misses:
        out.append("missed targets:")
        out += [f"  {m}" for m in misses]
    else:
        out.append("missed targets: none")
    return out, misses
