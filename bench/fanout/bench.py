"""bench/fanout: `/schedule` over a fake organisation of 1,000 projects (111 folders, three levels;
300 projects with 2 Cloud SQL instances of 5 databases: 3,000 tasks), for both discovery strategies.

Every fake call answers after 50 ms and the fake enforces per-second quotas by answering 429 past
them (fake_google.py). The service's client-side limits are set at 90% of those quotas. For each
strategy, one run: a fresh fake and a fresh `data-backup serve` (gcp source, cloud_tasks queue, all
endpoints on the fake), then one timed `POST /schedule`. Reported: wall time, calls and 429s per
API, the service's peak RSS (VmHWM), and the floor: for each API, calls needed ÷ quota rate; the
floor is the slowest API's (discovery and createTask overlap, so no run can beat it). The looser
"phased" floor of earlier runs (those per-API times summed, plus createTask's latency × tasks ÷
concurrency, as for a run whose phases follow one another) is reported beside it.

Targets (issue 3): wall ≤ 1.25 × floor; 429s < 1% of calls; asset strategy ≥ 3× fewer Cloud SQL +
Resource Manager calls than the walk; peak RSS < 100 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

QUOTA = {"resourcemanager": 600, "sqladmin": 1800, "cloudasset": 120, "cloudtasks": 600000}
LATENCY_MS = 50
CREATE_CONCURRENCY = 16


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _json(raw: bytes):
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


def get(url: str, data: bytes | None = None, timeout: float = 600) -> tuple[int, dict]:
    # A POST says its body is JSON: the service refuses form-encoded bodies when it runs without [auth].
    headers = {"content-type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, _json(r.read())
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read())


def hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def wait_port(proc: subprocess.Popen) -> int:
    line = proc.stdout.readline()
    return int(line.strip())


def run(bin_path: str, strategy: str, work: Path) -> dict:
    fake = subprocess.Popen(
        [sys.executable, str(HERE / "fake_google.py"), "--latency-ms", str(LATENCY_MS),
         "--rm-per-minute", str(QUOTA["resourcemanager"]), "--sql-per-minute", str(QUOTA["sqladmin"]),
         "--asset-per-minute", str(QUOTA["cloudasset"]), "--tasks-per-minute", str(QUOTA["cloudtasks"])],
        stdout=subprocess.PIPE, text=True)
    fake_port = wait_port(fake)
    fake_url = f"http://127.0.0.1:{fake_port}"
    port = 18000 + (os.getpid() % 1000)
    store = work / f"store-{strategy}"
    store.mkdir(parents=True, exist_ok=True)
    cfg = work / f"{strategy}.toml"
    cfg.write_text(f"""bind = "127.0.0.1:{port}"
[store]
url = "file://{store}"
[schedule]
daily_at = ""
[[sources]]
name = "org"
kind = "gcp"
folders = ["folders/1"]
strategy = "{strategy}"
[queue]
kind = "cloud_tasks"
queue = "projects/ops/locations/europe-west1/queues/backups"
target_url = "https://data-backup.example/export"
service_account = "tasks@ops.iam.gserviceaccount.com"
create_concurrency = {CREATE_CONCURRENCY}
[gcp]
credentials = "anonymous"
resource_manager_endpoint = "{fake_url}"
sql_admin_endpoint = "{fake_url}"
asset_endpoint = "{fake_url}"
cloud_tasks_endpoint = "{fake_url}"
resource_manager_per_minute = {QUOTA["resourcemanager"] * 9 // 10}
sql_admin_per_minute = {QUOTA["sqladmin"] * 9 // 10}
asset_per_minute = {QUOTA["cloudasset"] * 9 // 10}
cloud_tasks_per_minute = {QUOTA["cloudtasks"] * 9 // 10}
""")
    env = dict(os.environ, RUST_LOG="warn")
    svc = subprocess.Popen([bin_path, "--config", str(cfg), "serve"], env=env,
                           stdout=subprocess.DEVNULL, stderr=open(work / f"{strategy}.log", "w"))
    try:
        deadline = time.time() + 30
        while True:
            try:
                if get(f"http://127.0.0.1:{port}/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit(f"data-backup did not start; see {work}/{strategy}.log")
            time.sleep(0.05)
        log(f"{strategy}: POST /schedule")
        t0 = time.monotonic()
        status, summary = get(f"http://127.0.0.1:{port}/schedule", data=b"")
        wall = time.monotonic() - t0
        if status not in (200, 503):  # 503: some tasks not enqueued, still a measured run
            raise SystemExit(f"{strategy}: POST /schedule answered {status}: {summary}")
        rss = hwm_kib(svc.pid)
        _, stats = get(f"{fake_url}/stats")
    finally:
        svc.send_signal(signal.SIGTERM)
        svc.wait(timeout=30)
        fake.kill()
        fake.wait()
    needed = {k: v["calls"] - v["throttled"] for k, v in stats.items()}
    # Seconds each API's quota needs for the calls this run made (createTask's quota is far away).
    per_api = {k: needed[k] / (QUOTA[k] / 60) for k in QUOTA}
    # The floor: no run can finish before its slowest API has made its calls at the quota rate.
    floor = max(per_api.values())
    # The older, looser bound of a run whose phases follow one another (Resource Manager or Cloud
    # Asset, then Cloud SQL, then createTask at its latency × concurrency), kept for comparison.
    phased = (per_api["resourcemanager"] + per_api["cloudasset"] + per_api["sqladmin"]
              + needed["cloudtasks"] * LATENCY_MS / 1000 / CREATE_CONCURRENCY)
    calls = sum(v["calls"] for v in stats.values())
    throttled = sum(v["throttled"] for v in stats.values())
    return {"strategy": strategy, "status": status, "wall_s": round(wall, 2), "floor_s": round(floor, 2),
            "wall_over_floor": round(wall / floor, 3),
            "per_api_floor_s": {k: round(v, 2) for k, v in per_api.items()}, "phased_floor_s": round(phased, 2),
            "wall_over_phased": round(wall / phased, 3), "stats": stats, "calls": calls, "throttled": throttled,
            "throttled_pct": round(100 * throttled / max(calls, 1), 3), "peak_rss_mib": round(rss / 1024, 1),
            "enqueued": (summary or {}).get("enqueued"), "discovered": (summary or {}).get("discovered"),
            "complete": (summary or {}).get("complete"), "errors": len((summary or {}).get("errors") or [])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", default="/tmp/bench-fanout")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = [run(args.bin, s, Path(tempfile.mkdtemp(dir=work))) for s in ("walk", "asset_inventory")]
    walk, asset = results
    rm_sql = lambda r: r["stats"]["resourcemanager"]["calls"] + r["stats"]["sqladmin"]["calls"]  # noqa: E731
    lines = ["| strategy | /schedule | wall | floor | wall/floor | phased floor | wall/phased | RM calls | SQL calls | Asset calls | Tasks calls | 429s | peak RSS |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        s = r["stats"]
        lines.append(f"| {r['strategy']} | {r['status']} ({r['enqueued']} enqueued, complete={r['complete']}) | {r['wall_s']} s | {r['floor_s']} s | "
                     f"{r['wall_over_floor']} | {r['phased_floor_s']} s | {r['wall_over_phased']} | {s['resourcemanager']['calls']} | {s['sqladmin']['calls']} | {s['cloudasset']['calls']} | "
                     f"{s['cloudtasks']['calls']} | {r['throttled']} ({r['throttled_pct']}%) | {r['peak_rss_mib']} MiB |")
    lines.append("")
    lines.append(f"Cloud SQL + Resource Manager calls: walk {rm_sql(walk)}, asset {rm_sql(asset)} "
                 f"({rm_sql(walk) / max(rm_sql(asset), 1):.2f}x fewer)")
    report = "\n".join(lines)
    print(report)
    (work / "results.md").write_text(report + "\n")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
