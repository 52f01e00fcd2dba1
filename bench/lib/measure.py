"""Measuring one command: wall time and peak RSS, per process.

`run()` starts the command under `/usr/bin/time -f '%e %M'` and, while it runs, samples
`/proc/PID/status` of every process in the tree (every `interval` seconds) for `VmHWM`, the kernel's
own high-water mark of that process's resident set. `VmHWM` only grows, so the last sample taken
before a process exits is its peak, short of whatever it added in the final interval.

Noise: the machine's busy CPU time during the run (from /proc/stat), less the command tree's own
(`%U + %S`), the extra processes' (the PostgreSQL backend) and the sampler's, is the CPU that other
work took meanwhile: `foreign_cpu_s`. Callers measure again when it is large.

Why both: `/usr/bin/time`'s `%M` is `ru_maxrss` from `wait4()` on its child, and Linux fills that
with the larger of the child's own peak and the peaks of the descendants it reaped (`cmaxrss`). For
`data-backup export`, which runs and reaps `pg_dump`, `%M` is therefore max(data-backup, pg_dump),
not data-backup's own figure (and never the sum). The per-process samples separate the two.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field


@dataclass
class Measurement:
    wall_s: float                       # %e of /usr/bin/time
    time_maxrss_kib: int                # %M of /usr/bin/time (max over the process and its reaped children)
    hwm_kib: dict[str, int] = field(default_factory=dict)  # command name -> sampled VmHWM (max over its pids)
    cpu_s: dict[str, float] = field(default_factory=dict)   # command name -> sampled user+system CPU seconds
    returncode: int = 0
    samples: int = 0
    sampler_cpu_s: float = 0.0          # CPU the sampling loop itself used (it shares the machine)
    tree_cpu_s: float = 0.0             # %U + %S of /usr/bin/time: the command and its reaped children
    foreign_cpu_s: float = 0.0          # CPU the rest of the machine used meanwhile (other work: noise)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float | None:
    """User + system CPU seconds of a live process so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def _status(pid: int) -> tuple[str, int] | None:
    """(Name, VmHWM KiB) of a live process; None once it has exited (a zombie has no Vm lines)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    name, hwm = "?", None
    for line in text.splitlines():
        if line.startswith("Name:"):
            name = line.split(None, 1)[1].strip()
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return None if hwm is None else (name, hwm)


def run(argv: list[str], *, stdout=None, stderr=None, interval: float = 0.02, env=None, extra=None) -> Measurement:
    """Runs argv under /usr/bin/time, sampling the VmHWM and CPU time of each process of its tree.

    `extra`, when given, is called about every 100 ms and returns {pid: label} of processes outside
    the tree to sample as well (e.g. the PostgreSQL backend serving pg_dump)."""
    extra_pids: dict[int, str] = {}
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    total0, idle0 = _cpu_times()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        proc = subprocess.Popen(
            ["/usr/bin/time", "-f", "%e %M %U %S", "-o", tf.name, *argv],
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            env=env,
        )
        peaks: dict[int, tuple[str, int]] = {}
        cpu: dict[int, float] = {}
        samples = 0
        while proc.poll() is None:
            # Every process below /usr/bin/time (the command and its children, grandchildren...).
            todo, seen = _children(proc.pid), set()
            # Look for new extra processes every 10 samples (a scan of /proc costs ~1.5 ms).
            if extra is not None and samples % 10 == 0:
                extra_pids.update(extra())
            for pid, label in extra_pids.items():
                st, c = _status(pid), _cpu(pid)
                if st is not None and c is not None:
                    prev = peaks.get(pid)
                    peaks[pid] = (label, max(st[1], prev[1] if prev else 0))
                    cpu[pid] = c
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                st = _status(pid)
                if st is not None:
                    name, hwm = st
                    prev = peaks.get(pid)
                    peaks[pid] = (name, max(hwm, prev[1] if prev else 0))
                    c = _cpu(pid)
                    if c is not None:
                        cpu[pid] = c
                todo.extend(_children(pid))
            samples += 1
            time.sleep(interval)
        wall_s, maxrss, user_s, sys_s = tf.read().split()[-4:]
    total1, idle1 = _cpu_times()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    sampler_cpu = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
    machine_busy = ((total1 - total0) - (idle1 - idle0)) / _TICK
    tree_cpu = float(user_s) + float(sys_s)
    extra_cpu = sum(cpu.get(pid, 0.0) for pid in extra_pids)
    by_name: dict[str, int] = {}
    cpu_by_name: dict[str, float] = {}
    for pid, (name, hwm) in peaks.items():
        by_name[name] = max(by_name.get(name, 0), hwm)
        cpu_by_name[name] = cpu_by_name.get(name, 0.0) + cpu.get(pid, 0.0)
    foreign = max(0.0, machine_busy - tree_cpu - extra_cpu - sampler_cpu)
    return Measurement(float(wall_s), int(maxrss), by_name, cpu_by_name, proc.returncode, samples, sampler_cpu,
                       tree_cpu, foreign)


def median(xs):
    return statistics.median(xs)


def mib(kib: float) -> float:
    return kib / 1024.0


COMPILERS = ("rustc", "cargo", "cc1", "cc1plus", "ld", "ld.lld", "mold", "clippy-driver", "rustdoc")


def compilers_running() -> bool:
    """Whether a compiler runs anywhere on the machine (another engineer's build).
    BENCH_NO_QUIET=1 turns this check and quiet_machine() off (smoke tests of the harness)."""
    if os.environ.get("BENCH_NO_QUIET") == "1":
        return False
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() in COMPILERS:
                        return True
            except OSError:
                pass
    return False


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v[:8]), idle


def busy_fraction(window_s: float = 1.0) -> float:
    """Share of the machine's CPU time (all cores) that was busy during window_s."""
    t0, i0 = _cpu_times()
    time.sleep(window_s)
    t1, i1 = _cpu_times()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def quiet_machine(max_wait_s: float = 900.0, max_busy: float = 0.15) -> float:
    """Waits (up to max_wait_s) until the machine is idle: no compiler running and at most
    max_busy of its CPU busy over one second. Another engineer's build or test run on a 2-core box
    would distort every figure. Returns the seconds waited beyond the one-second check."""
    if os.environ.get("BENCH_NO_QUIET") == "1":
        return 0.0
    # BENCH_QUIET_MAX_S: a shorter wait on a machine that is never idle (the figures are noisier).
    max_wait_s = float(os.environ.get("BENCH_QUIET_MAX_S", max_wait_s))
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait_s:
        if not compilers_running() and busy_fraction() <= max_busy:
            return max(0.0, time.monotonic() - t0 - 1.0)
        time.sleep(2)
    return time.monotonic() - t0
