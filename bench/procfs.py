"""Readings from /proc: a process tree, its CPU (utime/stime clock ticks
and the per-thread schedstat run time in ns), memory and threads."""

import os
import resource
import statistics
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_children():
    """ppid -> [pid] for every process."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid, kids):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def stat_split(pid):
    """(utime, stime) of a process in clock ticks, 0s when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0, 0
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[11]), int(fields[12])


def schedstat(pid):
    """(run time in ns, times put on a CPU) summed over the process's
    threads: the second is about the wake-ups, each a thread that slept."""
    total = slices = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
            total += int(fields[0])
            slices += int(fields[2])
        except (OSError, ValueError, IndexError):
            pass
    return total, slices


def status_field(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle


def system_threads():
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[1])


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime




def trees_of(pids):
    """{pid: [pid and its descendants]}: a BEAM's CPU includes its child processes'."""
    kids = proc_children()
    return {p: tree(p, kids) for p in pids}


def cpu_reading(trees):
    """{root: (utime ticks, stime ticks, schedstat ns, schedstat slices)}
    summed over each tree, with the monotonic moment in the middle of the
    reading (reading hundreds of processes takes a while)."""
    t0 = time.monotonic()
    out = {}
    for root, pids in trees.items():
        u = s = ns = slices = 0
        for p in pids:
            a, b = stat_split(p)
            run, on_cpu = schedstat(p)
            u, s, ns, slices = u + a, s + b, ns + run, slices + on_cpu
        out[root] = (u, s, ns, slices)
    return (t0 + time.monotonic()) / 2, out


def cpu_figures(before, after, interval_s, pings_per_round):
    """CPU of each process between two readings: per process per round and
    per second (from utime+stime ticks and from schedstat ns), per ping, the
    cores all of them used, and the user/system split of the ticks."""
    (t0, r0), (t1, r1) = before, after
    w = t1 - t0
    rounds = w / interval_s
    roots = list(r0)
    user = sum(r1[p][0] - r0[p][0] for p in roots)
    system = sum(r1[p][1] - r0[p][1] for p in roots)
    ticks = user + system
    stat = [(r1[p][0] + r1[p][1] - r0[p][0] - r0[p][1]) / CLK_TCK / rounds for p in roots]
    sched = [(r1[p][2] - r0[p][2]) / 1e9 / rounds for p in roots]
    per_round_stat = 1e6 * statistics.mean(stat)
    per_round_sched = 1e6 * statistics.mean(sched)
    slices = statistics.mean((r1[p][3] - r0[p][3]) / rounds for p in roots)
    return {
        "window_s": w,
        "ticks_counted": ticks,
        "clk_tck": CLK_TCK,
        "user_ticks": user,
        "system_ticks": system,
        "user_pct": 100.0 * user / ticks if ticks else None,
        "system_pct": 100.0 * system / ticks if ticks else None,
        "per_node_per_round_us_stat": {"mean": per_round_stat, "max": 1e6 * max(stat)},
        "per_node_per_round_us_schedstat": {"mean": per_round_sched, "max": 1e6 * max(sched)},
        "per_node_per_s_us_stat": {"mean": per_round_stat / interval_s,
                                   "max": 1e6 * max(stat) / interval_s},
        "per_node_per_s_us_schedstat": {"mean": per_round_sched / interval_s,
                                        "max": 1e6 * max(sched) / interval_s},
        "pings_per_round": pings_per_round,
        "per_ping_us_stat": per_round_stat / pings_per_round,
        "per_ping_us_schedstat": per_round_sched / pings_per_round,
        "wakeups_per_node_per_round": slices,
        "wakeups_per_node_per_s": slices / interval_s,
        "wakeups_per_ping": slices / pings_per_round,
        "cores_all_nodes_stat": ticks / CLK_TCK / w,
        "cores_all_nodes_schedstat": sum(r1[p][2] - r0[p][2] for p in roots) / 1e9 / w,
    }
