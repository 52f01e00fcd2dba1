"""bench/status: seeds a `file://` store with N databases × 30 nights (each database's `latest/`
copy, the previous night's manifest, its history object, and tonight's run ledger), serves it with
`status.cache_secs = 0` (so every request computes the status again), and times:

- `GET /` (the overview page: status, histories, the HTML of every strip and sparkline),
- `GET /status` (the JSON of the same status: the same reads, no HTML), the baseline,
- `GET /database?…` (one database's page),
- `data-backup status` (the CLI: a process start, the same reads, the terminal table).

Each is measured `--reps` times, median reported, requests interleaved; before each size the
harness waits for an idle machine (bench/lib/measure.py). Prints a Markdown report and leaves it,
with the raw figures, in `WORK/results.{md,json}`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import time
import urllib.request

import measure

NIGHTS = 30


def manifest(name: str, day: dt.date, bytes_: int, secs: int) -> dict:
    finished = dt.datetime.combine(day, dt.time(2, 0), tzinfo=dt.timezone.utc)
    started = finished - dt.timedelta(seconds=secs)
    ds = day.isoformat()
    return {
        "version": 1, "source": "pgsrc", "project": "pgsrc", "instance": "pg", "database": name,
        "engine": "postgres", "run_date": ds, "run_id": "010000-bench", "class": "daily",
        "key": f"daily/pgsrc/pg/{name}/{ds}/{name}.dump.zst", "format": "pg_custom_zstd",
        "compression": "zstd", "compression_level": 3, "bytes": bytes_, "raw_bytes": None,
        "sha256": None, "object_version": None,
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "finished_at": finished.isoformat().replace("+00:00", "Z"),
        "tools": {"dump": "pg_dump (PostgreSQL) 15", "server": "15", "data_backup": "bench"},
        "row_counts": {"public.t": 1000},
    }


def write(root: str, key: str, value: dict) -> None:
    path = os.path.join(root, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)


def seed(root: str, n: int, today: dt.date) -> None:
    shutil.rmtree(root, ignore_errors=True)
    planned = []
    for i in range(n):
        name = f"db{i:05d}"
        nights = {}
        for back in range(NIGHTS):
            day = today - dt.timedelta(days=back)
            m = manifest(name, day, 1_000_000 + 1000 * i + back, 30 + (i + back) % 60)
            if back % 17 == 3 and i % 5 == 0:
                nights[day.isoformat()] = {"failure": {"error_class": "dump_failed", "message": "pg_dump exited 1",
                                                       "at": m["finished_at"]}}
                continue
            nights[day.isoformat()] = {"backup": {
                "run_id": m["run_id"], "class": "daily", "bytes": m["bytes"], "started_at": m["started_at"],
                "finished_at": m["finished_at"], "encrypted": False, "tables": 1, "rows": 1000}}
            if back == 0:
                write(root, f"latest/pgsrc/pg/{name}.json", m)
            if back == 1:
                write(root, f"daily/pgsrc/pg/{name}/{day.isoformat()}/{name}.manifest.json", m)
        write(root, f"history/pgsrc/pg/{name}/0000000001.json",
              {"version": 1, "project": "pgsrc", "instance": "pg", "database": name, "nights": nights})
        planned.append({"source": "pgsrc", "project": "pgsrc", "instance": "pg", "database": name,
                        "engine": "postgres", "action": "export"})
    write(root, f"runs/{today.isoformat()}/010000-bench.json", {
        "run_id": "010000-bench", "run_date": today.isoformat(),
        "started_at": dt.datetime.combine(today, dt.time(1, 0), tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "databases": planned, "errors": [], "complete": True})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, accept: str | None = None) -> tuple[float, int]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        body = r.read()
    return time.perf_counter() - t0, len(body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--sizes", nargs="+", type=int, default=[100, 1000])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    today = dt.datetime.now(dt.timezone.utc).date()
    results = []
    for n in args.sizes:
        store = os.path.join(args.work, f"store-{n}")
        seed(store, n, today)
        port = free_port()
        cfg = os.path.join(args.work, f"bench-{n}.toml")
        with open(cfg, "w") as f:
            f.write(f'bind = "127.0.0.1:{port}"\n[store]\nurl = "file://{store}"\n'
                    f'[status]\ncache_secs = 0\n[schedule]\ndaily_at = ""\n')
        env = dict(os.environ, RUST_LOG="warn", NO_COLOR="1")
        env.pop("DATA_BACKUP_CONFIG", None)
        if not os.environ.get("BENCH_NO_QUIET"):
            measure.quiet_machine()
        server = subprocess.Popen([args.bin, "--config", cfg, "serve"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    get(base + "/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            get(base + "/")  # warm the page cache of the store's files
            times: dict[str, list[float]] = {"overview": [], "json": [], "database": [], "cli": []}
            sizes: dict[str, int] = {}
            for _ in range(args.reps):
                t, sizes["overview"] = get(base + "/")
                times["overview"].append(t)
                t, sizes["json"] = get(base + "/status")
                times["json"].append(t)
                t, sizes["database"] = get(base + "/database?project=pgsrc&instance=pg&database=db00000")
                times["database"].append(t)
                t0 = time.perf_counter()
                subprocess.run([args.bin, "--config", cfg, "status"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
                times["cli"].append(time.perf_counter() - t0)
        finally:
            server.terminate()
            server.wait()
        med = {k: statistics.median(v) for k, v in times.items()}
        results.append({"databases": n, "nights": NIGHTS, "median_s": med, "bytes": sizes, "runs": times})
    lines = ["| databases × nights | `GET /` overview | `GET /status` JSON | overview / JSON | `GET /database` | `data-backup status` | overview page size |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        m = r["median_s"]
        lines.append(f"| {r['databases']:,} × {r['nights']} | {m['overview'] * 1000:.0f} ms | {m['json'] * 1000:.0f} ms | "
                     f"{m['overview'] / m['json']:.2f}x | {m['database'] * 1000:.0f} ms | {m['cli'] * 1000:.0f} ms | "
                     f"{r['bytes']['overview'] / 1024:.0f} KiB |")
    report = "\n".join(lines) + "\n"
    print(report)
    with open(os.path.join(args.work, "results.md"), "w") as f:
        f.write(report)
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
