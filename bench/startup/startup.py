"""bench/startup: time from exec to the first 200 on /healthz, and idle RSS, of `data-backup serve`
beside a minimal FastAPI + uvicorn app importing the Google client libraries (app.py), in one run.

Run through bench/startup/run.sh, which builds the binary and prepares the Python venv first.

One run of a service: note the clock, spawn the process (fork + exec), then poll 127.0.0.1:PORT
about every millisecond with a raw HTTP/1.1 `GET /healthz` over a fresh connection until one
answers 200; the time to that answer is the startup time. Then leave the service idle for a second
and read VmRSS (and VmHWM) from /proc/PID/status of the service's process (and any children it
has), then SIGTERM it. The two services alternate run by run, so drift on the machine falls on both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))
import measure  # noqa: E402

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def healthz(port: int) -> bool:
    """True when GET /healthz answers 200; False when nothing listens yet or the answer is not 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(REQUEST)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200")
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout, OSError):
        return False


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(measure._children(p))
    return out


def vm(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def one_run(argv: list[str], port: int, env: dict, cwd: str | None, idle_s: float, log_path: Path) -> dict:
    deadline = time.monotonic() + 60
    while not port_free(port):
        if time.monotonic() > deadline:
            sys.exit(f"port {port} stays busy")
        time.sleep(0.05)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    total0, idle0 = measure._cpu_times()
    with open(log_path, "ab") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=logf, stderr=logf, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
        polls = 0
        while True:
            if healthz(port):
                ready = time.perf_counter() - t0
                break
            polls += 1
            if proc.poll() is not None:
                sys.exit(f"{argv[0]} exited ({proc.returncode}) before answering; see {log_path}")
            if time.perf_counter() - t0 > 60:
                proc.kill()
                sys.exit(f"{argv[0]} did not answer /healthz within 60 s; see {log_path}")
            time.sleep(0.001)
        time.sleep(idle_s)
        pids = tree(proc.pid)
        rss = sum(vm(p, "VmRSS") for p in pids)
        hwm = sum(vm(p, "VmHWM") for p in pids)
        service_cpu = sum(measure._cpu(p) or 0.0 for p in pids)
        total1, idle1 = measure._cpu_times()
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        own = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
        busy = ((total1 - total0) - (idle1 - idle0)) / measure._TICK
        foreign = max(0.0, busy - service_cpu - own)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"ready_s": ready, "rss_kib": rss, "hwm_kib": hwm, "processes": len(pids), "polls": polls,
            "foreign_cpu_s": foreign}


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary(runs: list[dict]) -> dict:
    ready = [r["ready_s"] * 1000 for r in runs]
    rss = [r["rss_kib"] / 1024 for r in runs]
    return {
        "ready_ms_median": statistics.median(ready),
        "ready_ms_p95": pct(ready, 95),
        "ready_ms_min": min(ready),
        "ready_ms_max": max(ready),
        "rss_mib_median": statistics.median(rss),
        "rss_mib_max": max(rss),
        "hwm_mib_median": statistics.median(r["hwm_kib"] / 1024 for r in runs),
        "processes": runs[0]["processes"],
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True, help="the venv's python")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rust-port", type=int, default=18080)
    ap.add_argument("--python-port", type=int, default=18081)
    ap.add_argument("--idle", type=float, default=1.0, help="seconds idle after the first 200 before reading RSS")
    ap.add_argument("--work", default="/tmp/bench-startup")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent

    cfg = work / "config.toml"
    cfg.write_text(
        f"""bind = "127.0.0.1:{a.rust_port}"
[store]
url = "file://{work}/store"
[[sources]]
name = "bench"
kind = "postgres"
url = "postgres://postgres@127.0.0.1:5432/"
instance = "pg"
[export]
zstd_level = 2
zstd_threads = 0
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATA_BACKUP_")}
    # The Python service runs from a copy of app.py in the work dir (its __pycache__ stays out of the
    # repository) and may write bytecode, as a deployed image would have it precompiled: the warm-up
    # runs fill the caches (pip already compiled site-packages).
    appdir = work / "app"
    appdir.mkdir(exist_ok=True)
    shutil.copy(here / "app.py", appdir / "app.py")
    pyenv = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    services = {
        "data-backup serve": ([a.bin, "--config", str(cfg), "serve"], a.rust_port, None, env),
        "FastAPI + uvicorn (Google libs)": (
            [a.python, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(a.python_port),
             "--log-level", "warning", "--no-access-log"],
            a.python_port,
            str(appdir),
            pyenv,
        ),
    }
    pyver = subprocess.run(
        [a.python, "-c", "import sys; from importlib.metadata import version as v; print('Python ' + sys.version.split()[0], "
         "*[f'{p} {v(p)}' for p in ('fastapi', 'uvicorn', 'google-cloud-storage', 'google-cloud-tasks', "
         "'google-cloud-resource-manager', 'google-api-python-client', 'google-auth')], sep=', ')"],
        capture_output=True, text=True, check=True).stdout.strip()
    log(f"python side: {pyver}")
    log(f"waiting for an idle machine (waited {measure.quiet_machine():.0f} s)")

    runs: dict[str, list[dict]] = {name: [] for name in services}
    for i in range(a.warmup):  # page cache, .pyc files
        for name, (argv, port, cwd, senv) in services.items():
            one_run(argv, port, senv, cwd, 0.1, work / "service.log")
    redone, waited = 0, 0.0
    i = 0
    while i < a.runs:
        waited += measure.quiet_machine()
        for name, (argv, port, cwd, senv) in services.items():
            r = one_run(argv, port, senv, cwd, a.idle, work / "service.log")
            runs[name].append(r)
        # A build started, or other work took more than 0.1 CPU s of the ~1 s run: the pair does not count.
        if measure.compilers_running() or any(runs[n][-1]["foreign_cpu_s"] > 0.1 for n in services):
            redone += 1
            for name in services:
                runs[name].pop()
            continue
        i += 1
        if i % 5 == 0:
            log(f"{i}/{a.runs} runs")

    res = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                    "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")},
        "python": pyver,
        "idle_s": a.idle,
        "redone": redone,
        "waited_for_quiet_s": round(waited, 1),
        "services": {name: summary(r) for name, r in runs.items()},
    }
    (work / "results.json").write_text(json.dumps(res, indent=2))
    report = render(res, a)
    (work / "results.md").write_text(report)
    print(report)
    log(f"results: {work}/results.json and results.md")


def render(res: dict, a) -> str:
    s = res["services"]
    rust, py = s["data-backup serve"], s["FastAPI + uvicorn (Google libs)"]
    L = [
        f"bench/startup — {res['started']} — {res['machine']['cores']} cores ({res['machine']['cpu']}); "
        f"{a.runs} alternating runs each, after {a.warmup} warm-up runs; RSS read {res['idle_s']:g} s after the first 200",
        f"python side: {res['python']}",
        "",
        "| service | exec → first 200, median ms | p95 ms | min–max ms | idle RSS median MiB (max) | VmHWM median MiB |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, x in s.items():
        L.append(f"| {name} | {x['ready_ms_median']:.1f} | {x['ready_ms_p95']:.1f} | {x['ready_ms_min']:.1f}–{x['ready_ms_max']:.1f} | "
                 f"{x['rss_mib_median']:.1f} ({x['rss_mib_max']:.1f}) | {x['hwm_mib_median']:.1f} |")
    L += [
        "",
        "| figure | data-backup | target | verdict | Python / data-backup |",
        "| --- | ---: | --- | --- | ---: |",
        f"| startup, median | {rust['ready_ms_median']:.1f} ms | < 50 ms | {'met' if rust['ready_ms_median'] < 50 else 'MISSED'} | {py['ready_ms_median'] / rust['ready_ms_median']:.0f}x |",
        f"| startup, p95 | {rust['ready_ms_p95']:.1f} ms | < 50 ms | {'met' if rust['ready_ms_p95'] < 50 else 'MISSED'} | {py['ready_ms_p95'] / rust['ready_ms_p95']:.0f}x |",
        f"| idle RSS, median | {rust['rss_mib_median']:.1f} MiB | < 20 MiB | {'met' if rust['rss_mib_median'] < 20 else 'MISSED'} | {py['rss_mib_median'] / rust['rss_mib_median']:.1f}x |",
    ]
    if res["redone"] or res["waited_for_quiet_s"] > 1:
        L += ["", f"(waited {res['waited_for_quiet_s']:.0f} s in total for the machine to be idle before runs; "
                  f"{res['redone']} pair(s) of runs discarded because other work ran during them)"]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
