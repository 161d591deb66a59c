"""The phases of one scenario (N nodes of one runtime), each a function over
a Run: what it was asked for, the nodes it started, the figures it has
collected so far. A phase that breaks is recorded and the next one still
runs, except when the nodes could not even be started."""

import os
import signal
import statistics
import threading
import time

from cluster import Cluster
from common import PROCS, BenchError, gaps, log, median, ms, now, p95
from lines import absent, all_true, lists, present
from procfs import (CLK_TCK, cpu_figures, cpu_reading, machine_ticks, self_cpu, status_field,
                    trees_of)
from runtimes import HungPeer


class Run:
    """One runtime at one N: the options, the cluster and its nodes, the hung
    peer while it lives, and the figures (`res`, stored as one JSON run)."""

    def __init__(self, rt, n, opts, reader, base_dir):
        self.rt = rt
        self.n = n
        self.opts = opts
        self.reader = reader
        self.interval = opts.interval_ms / 1000.0
        self.dir = base_dir / f"{rt.label}-{n}"
        self.dir.mkdir()
        self.cl = Cluster(rt, self.dir, reader, self.interval)
        self.hung = None
        self.res = {"runtime": rt.label, "n": n, "interval_ms": opts.interval_ms, "errors": []}

    def everyone(self):
        return all_true([x.name for x in self.cl.nodes])


def spread_ms(xs):
    """Median, p95 and max of seconds, in ms; None when any is unknown."""
    if not xs or None in xs:
        return None
    return {"median": ms(median(xs)), "p95": ms(p95(xs)), "max": ms(max(xs))}


def start_nodes(run):
    """One node after the other; startup = from just before exec to the
    node's first status line (as read, and as the node stamped it)."""
    startups, stamped = [], []
    mark = run.rt.mark()
    for i in range(1, run.n + 1):
        node = run.cl.start(i)
        read, own = run.cl.wait_first_status(node)
        startups.append(read)
        stamped.append(own)
    run.res["startup_ms"] = {"median": ms(median(startups)), "p95": ms(p95(startups)),
                             "max": ms(max(startups)), "samples": [ms(s) for s in startups]}
    run.res["startup_stamped_ms"] = spread_ms(stamped)
    if mark is not None:
        run.res["s3_start"] = run.rt.figures(mark, run.n)


def both_gaps(lines):
    """Gaps between the (read, stamped) times of consecutive status lines:
    as read, and as stamped (None when a stamp is unknown)."""
    own = [s for _, s in lines]
    return gaps([t for t, _ in lines]), None if None in own else gaps(own)


def joined(so_far, more):
    """so_far + more, or None once either is unknown."""
    return None if so_far is None or more is None else so_far + more


def gap_figures(gs):
    """Mean and max of gaps in seconds, in ms; None when there are none."""
    return {"mean": ms(statistics.mean(gs)), "max": ms(max(gs))} if gs else None


def steady(run):
    """Until every node lists all N nodes true, then a few more rounds. A
    runtime without rounds (Serf) settles instead until it has nothing left
    to gossip, then for as long as those rounds last."""
    cl = run.cl
    worst, _ = cl.wait_all(cl.nodes, run.everyone(), cl.nodes[-1].t_exec,
                           10 + 10 * run.interval + 0.1 * run.n + run.rt.registry_period_s)
    run.res["steady_after_last_start_ms"] = ms(worst)
    if run.rt.periodic:
        cl.wait_lines(cl.nodes, run.opts.settle_rounds, now(),
                      10 + 10 * run.interval * run.opts.settle_rounds)
        return
    t0 = now()
    run.rt.settle(cl.nodes, 30 + 0.1 * run.n)
    run.res["settled_after_ms"] = ms(now() - t0)
    # A settling window as long as the rounds, not a wait for a condition.
    time.sleep(run.opts.settle_rounds * run.interval)


# CPU figures that count rounds or pings: none for a runtime without rounds.
PER_ROUND = ("per_node_per_round_us_stat", "per_node_per_round_us_schedstat",
             "pings_per_round", "per_ping_us_stat", "per_ping_us_schedstat",
             "wakeups_per_node_per_round", "wakeups_per_ping")


def window(run):
    """CPU (and its user/system split), memory and round period of the N
    nodes over a steady window. A node's round has N entries (its own
    answered in process), so CPU per ping is a round's CPU over N."""
    everyone = run.everyone()
    pids = [x.proc.pid for x in run.cl.nodes]
    m0, h0 = machine_ticks(), self_cpu()
    mark = run.rt.mark()
    before = cpu_reading(trees_of(pids))
    time.sleep(run.rt.window_s(run.opts))  # a measurement window, not a wait for a condition
    trees = trees_of(pids)
    after = cpu_reading(trees)
    m1, h1 = machine_ticks(), self_cpu()
    if mark is not None:
        run.res["s3_window"] = run.rt.figures(mark, run.n)
    w = after[0] - before[0]
    rss = [sum(status_field(q, "VmRSS") for q in trees[p]) for p in pids]
    threads = [sum(status_field(q, "Threads") for q in trees[p]) for p in pids]
    res = run.res
    res["rss_kib"] = {"median": median(rss), "max": max(rss), "samples": rss}
    res["threads"] = {"median": median(threads), "max": max(threads)}
    res["cpu"] = cpu_figures(before, after, run.interval, run.n)
    if not run.rt.periodic:
        for key in PER_ROUND:
            del res["cpu"][key]
    res["cpu"]["cores_machine_busy"] = (m1 - m0) / CLK_TCK / w
    res["cpu"]["cores_harness"] = (h1 - h0) / w
    t0, t1 = before[0], after[0]
    lines = true_lines = 0
    win_gaps, own_gaps, lags = [], [], []
    with run.reader.cond:
        for x in run.cl.nodes:
            read, own = both_gaps([ln for ln in x.status_at if t0 <= ln[0] <= t1])
            win_gaps += read
            own_gaps = joined(own_gaps, own)
            for t, msg, stamp in x.history:
                if t0 <= t <= t1:
                    lines += 1
                    true_lines += everyone.fn(msg)
                    lags.append(None if stamp is None else t - stamp)
    res["steady_window"] = {"lines": lines,
                            "all_true_pct": 100.0 * true_lines / lines if lines else None}
    if not run.rt.periodic:
        # No line in the window unless something changed; what every node
        # knows at its end, asked over the runtime's other way (Serf's RPC).
        wrong = run.rt.disagreeing(run.cl.nodes, everyone)
        run.cl.confirmed += run.n - len(wrong)
        res["steady_window"]["all_true_pct"] = 100.0 * (1 - len(wrong) / run.n)
        res["steady_window"]["asked_at_end"] = True
    res["period_baseline_ms"] = gap_figures(win_gaps)
    res["period_baseline_stamped_ms"] = gap_figures(own_gaps)
    # How late the harness read the lines the nodes stamped.
    res["line_lag_ms"] = spread_ms(lags)


def hung_peer(run):
    """Round period with a peer that accepts TCP and never answers."""
    cl, rounds = run.cl, run.opts.hung_rounds
    hung = run.hung = HungPeer("hung@127.0.0.1", cl.sync, run.dir, run.interval)
    t_h = now()
    hung.start(run.rt)
    worst, _ = cl.wait_all(cl.nodes, present(hung.name), t_h, 30 + 10 * run.interval)
    run.res["hung_listed_ms"] = ms(worst)
    t_from = now()
    cl.wait_lines(cl.nodes, rounds + 1, t_from, 30 + 20 * run.interval * rounds)
    hung_gaps, own_gaps, odd = [], [], []
    with run.reader.cond:
        for x in cl.nodes:
            lines = [ln for ln in x.status_at if ln[0] > t_from][: rounds + 1]
            read, own = both_gaps(lines)
            own_gaps = joined(own_gaps, own)
            for (t, _), g in zip(lines[1:], read):
                hung_gaps.append(g)
                if abs(g - run.interval) > 0.05:
                    odd.append({"node": x.name, "at_s": round(t - t_from, 3),
                                "gap_ms": round(g * 1000, 1)})
        listed_false = all(lists(hung.name, "false").fn(x.history[-1][1]) for x in cl.nodes)
    run.res["period_hung_ms"] = {"mean": ms(statistics.mean(hung_gaps)),
                                 "max": ms(max(hung_gaps)), "gaps": len(hung_gaps),
                                 "off_by_more_than_50ms": odd}
    run.res["period_hung_stamped_ms"] = gap_figures(own_gaps)
    run.res["hung_listed_false"] = listed_false
    run.res["hung_connections_accepted"] = hung.accepted


def convergence(run):
    """One more node: from its exec until every node lists it true."""
    cl = run.cl
    hung, run.hung = run.hung, None
    if hung is not None:
        # Not measured: let every round blocked on the hung peer finish and
        # the peer leave every line, so it cannot delay the join.
        t_stop = now()
        hung.stop()
        cl.wait_all(cl.nodes, absent(hung.name), t_stop, 30 + 10 * run.interval)
    mark = run.rt.mark()
    joiner = cl.start(run.n + 1)
    worst, own = cl.wait_all(cl.nodes, lists(joiner.name, "true"), joiner.t_exec,
                             run.rt.start_timeout + 10 * run.interval
                             + run.rt.registry_period_s)
    if mark is not None:
        # Every request from the joiner's exec until all nodes know it.
        run.res["s3_join"] = run.rt.figures(mark, run.n + 1)
    run.res["convergence_ms"] = ms(worst)
    run.res["convergence_stamped_ms"] = ms(own)
    join_logged(run, joiner)
    if joiner.first_status:
        run.res["joiner_startup_ms"] = ms(joiner.first_status - joiner.t_exec)


def join_logged(run, joiner):
    """When every other node logged `node NAME joined` for the joiner (a
    runtime that logs no such line has none), and how many listed it on
    their next status line after that."""
    seen = [(x, x.joined.get(joiner.name)) for x in run.cl.nodes if x is not joiner]
    if not seen or any(j is None for _, j in seen):
        missing = [x.name for x, j in seen if j is None]
        if len(missing) < len(seen):
            run.res["errors"].append(f"convergence: {len(missing)} nodes never logged that "
                                     f"{joiner.name} joined, e.g. {missing[0]}")
        return
    run.res["join_logged_ms"] = ms(max(t for _, (t, _) in seen) - joiner.t_exec)
    stamps = [s for _, (_, s) in seen]
    run.res["join_logged_stamped_ms"] = (None if None in stamps
                                         else ms(max(stamps) - joiner.t_exec))
    has = present(joiner.name)
    next_lists = 0
    for x, (t, _) in seen:
        after = [msg for tl, msg, _ in x.history if tl >= t]
        next_lists += bool(after) and has.fn(after[0])
    run.res["join_next_line_lists"] = {"nodes": len(seen), "listing": next_lists}


def kill9(run):
    """kill -9 one node: until every other node lists it false (then gone)."""
    cl, res = run.cl, run.res
    victim = cl.nodes[len(cl.nodes) // 2]
    others = [x for x in cl.nodes if x is not victim]
    t_kill = now()
    PROCS.kill_group(victim.proc)
    victim.proc.wait()
    cl.nodes.remove(victim)
    worst, own = cl.wait_all(others, lists(victim.name, "false"), t_kill,
                             run.rt.wait_s("detect", run.interval))
    res["kill9_detect_ms"] = ms(worst)
    res["kill9_detect_stamped_ms"] = ms(own)
    if run.rt.expires:
        worst, _ = cl.wait_all(others, absent(victim.name), t_kill,
                               run.rt.expire_wait_s(run.interval))
        res["kill9_expire_ms"] = ms(worst)
        return
    res["kill9_expire_ms"] = None
    res["kill9_expire_note"] = run.rt.expire_note
    # Not a measurement: clear the file so the next phase sees a clean cluster.
    try:
        (cl.sync / victim.name).unlink()
    except OSError:
        pass


def leave(run):
    """A graceful leave (SIGTERM; Serf's is SIGINT): until the node is gone
    from every other node's line, and until the process exits."""
    cl, res, rt = run.cl, run.res, run.rt
    victim = cl.nodes[1]
    others = [x for x in cl.nodes if x is not victim]
    done = {}

    def waiter(p=victim.proc):
        p.wait()
        done["t"] = now()

    wt = threading.Thread(target=waiter, name="leave-wait", daemon=True)
    res["leave_signal"] = signal.Signals(rt.leave_signal).name
    t_term = now()
    os.kill(victim.proc.pid, rt.leave_signal)
    wt.start()
    try:
        worst, _ = cl.wait_all(others, absent(victim.name), t_term,
                               rt.wait_s("leave", run.interval),
                               must=rt.removes_record_on_leave)
        res["sigterm_gone_ms"] = ms(worst)
        if worst is None:
            res["sigterm_gone_note"] = rt.leave_note
    finally:
        wt.join(timeout=10)
        if "t" not in done:
            PROCS.kill_group(victim.proc)
            victim.proc.wait()
        res["sigterm_exit_ms"] = ms(done["t"] - t_term) if "t" in done else None
        res["sigterm_exit_code"] = victim.proc.returncode
        with run.reader.cond:
            left = rt.left_text.format(name=victim.name)
            res["sigterm_logged_left"] = any(left in m for _, m in victim.other)
        cl.nodes.remove(victim)


PHASES = [("start", start_nodes), ("steady", steady), ("window", window),
          ("hung peer", hung_peer), ("convergence", convergence), ("kill -9", kill9),
          ("leave", leave)]


def scenario(rt, n, opts, reader, base_dir, only=None):
    """Runs every phase (or the `only` ones named) for N nodes of one
    runtime; returns the figures."""
    run = Run(rt, n, opts, reader, base_dir)
    if only is not None:
        run.res["phases"] = list(only)
    try:
        for name, phase in PHASES:
            if phase is hung_peer and not rt.has_hung_peer:
                continue
            if only is not None and name not in only:
                continue
            log(f"{rt.label} N={n}: {name}")
            try:
                phase(run)
            except BenchError as e:
                log(f"{rt.label} N={n}: BROKE in phase {name}: {e}")
                run.res["errors"].append(f"{name}: {e}")
                if name == "start":
                    break
    finally:
        if run.hung is not None:
            run.hung.stop()
        run.res["shutdown"] = run.cl.stop_all()
        if rt.asks_again:
            run.res["views_asked_again"] = run.cl.confirmed
    return run.res
