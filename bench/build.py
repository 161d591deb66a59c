"""Builds and sizes: the pulse binary measured (the static musl one the
image ships), the floor example built the same way, the image's size, and
the process limits a large cluster needs."""

import resource
import shutil
import struct
import subprocess
from pathlib import Path

from common import MUSL, REPO, BenchError, log, shown
from procfs import system_threads


def cargo_build(extra, what):
    cmd = ["cargo", "build", "--release", *extra]
    log(f"building {what}: {' '.join(cmd)}")
    r = subprocess.run(cmd, cwd=REPO, stdin=subprocess.DEVNULL)
    return r.returncode == 0


def ensure_binary(opts):
    if opts.binary:
        b = Path(opts.binary).resolve()
        if not b.is_file():
            raise BenchError(f"--binary {b} does not exist")
        return b
    # The shipped binary is the static musl one (musl's allocator also keeps
    # a node's RSS far below glibc's per-thread arenas); the glibc release
    # build is the fallback when the musl target is not installed.
    musl = REPO / "target" / MUSL / "release" / "pulse"
    if not opts.no_build:
        cargo_build(["--target", MUSL], "the static musl binary")
    if musl.exists():
        return musl
    b = REPO / "target" / "release" / "pulse"
    if not opts.no_build or not b.exists():
        if not cargo_build([], "the release binary") and not b.exists():
            raise BenchError("cargo build --release failed")
    if not b.exists():
        raise BenchError(f"{b} missing after the build")
    return b


def ensure_floor(opts, binary):
    """The floor example, built for the same target and profile as the
    pulse binary measured, so both run on the same libc and allocator."""
    musl = MUSL in Path(binary).parts
    out = REPO / "target" / (MUSL if musl else "") / "release" / "examples" / "floor"
    if not (opts.no_build and out.exists()):
        extra = ["--example", "floor"] + (["--target", MUSL] if musl else [])
        if not cargo_build(extra, "the floor example") and not out.exists():
            raise BenchError("cargo build --release --example floor failed")
    if not out.exists():
        raise BenchError(f"{shown(out)} missing after the build")
    return out


def elf_is_static(path):
    """True when the ELF file has no PT_INTERP (no dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return None
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        ptype, = struct.unpack_from("<I", table, i * phentsize)
        if ptype == 3:
            return False
    return True


def sizes(opts, binary):
    out = {"release_binary": {"path": shown(binary), "bytes": binary.stat().st_size}}
    musl = REPO / "target" / MUSL / "release" / "pulse"
    note = None
    if not opts.smoke and not opts.no_build:
        installed = subprocess.run(["rustup", "target", "list", "--installed"],
                                   capture_output=True, text=True)
        if MUSL not in installed.stdout.split():
            log(f"adding the {MUSL} target (rustup target add)")
            subprocess.run(["rustup", "target", "add", MUSL], stdin=subprocess.DEVNULL)
        if not cargo_build(["--target", MUSL], "the static musl binary"):
            note = "musl build failed"
    if musl.exists():
        out["musl_binary"] = {"path": shown(musl), "bytes": musl.stat().st_size,
                              "static": elf_is_static(musl)}
    else:
        out["musl_binary"] = {"bytes": None,
                              "note": note or "not built (--smoke/--no-build skip it)"}
    out["image"] = docker_image_size()
    return out


def docker_image_size():
    if not shutil.which("docker"):
        return {"bytes": None, "note": "no docker client"}
    try:
        r = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
                           capture_output=True, text=True, timeout=20)
    except (subprocess.TimeoutExpired, OSError) as e:
        return {"bytes": None, "note": f"docker: {e}"}
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["error"])[-1]
        return {"bytes": None, "note": f"docker: {last}"}
    refs = [x for x in r.stdout.split() if x.split(":")[0].rsplit("/", 1)[-1] == "pulse"]
    if not refs:
        return {"bytes": None, "note": "no pulse image"}
    refs.sort(key=lambda x: (not x.endswith(":latest"), x))
    ref = refs[0]
    r = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", ref],
                       capture_output=True, text=True, timeout=20)
    try:
        return {"ref": ref, "bytes": int(r.stdout.strip())}
    except ValueError:
        return {"ref": ref, "bytes": None, "note": r.stderr.strip()}


def raise_limits(max_n):
    notes = []
    for res_name in ("RLIMIT_NOFILE", "RLIMIT_NPROC"):
        which = getattr(resource, res_name)
        soft, hard = resource.getrlimit(which)
        if soft != hard:
            try:
                resource.setrlimit(which, (hard, hard))
                notes.append(f"{res_name} soft {fmt_lim(soft)} -> {fmt_lim(hard)}")
            except (ValueError, OSError) as e:
                notes.append(f"{res_name}: could not raise {fmt_lim(soft)} to {fmt_lim(hard)}: {e}")
        else:
            notes.append(f"{res_name} {fmt_lim(soft)}")
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    threads_max = int(Path("/proc/sys/kernel/threads-max").read_text())
    used = system_threads()
    need = (max_n + 1) * (max_n + 8)
    notes.append(f"threads: {used} in use, ~{need} needed at N={max_n}, "
                 f"pid_max {pid_max}, threads-max {threads_max}")
    if used + need > min(pid_max, threads_max):
        notes.append("WARNING: that may not fit; nodes may fail to start threads")
    return notes


def fmt_lim(v):
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)

