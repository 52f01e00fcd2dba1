"""bench/restore: `data-backup restore` against `pg_restore` of a `pg_dump -Fc` file, one run each,
and the cost of one default restore drill (scratch server start, restore, counts, teardown).

Run through bench/restore/run.sh, which builds the binary and makes sure bench_dump_1x exists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))
import measure  # noqa: E402
from measure import median, mib  # noqa: E402

MB = 1_000_000
SOURCE = "bench_dump_1x"
DATE = "2026-01-05"
# The only databases this benchmark creates or drops.
TARGETS = {"pg_restore": "bench_restore_pg", "data-backup": "bench_restore_db", "pg_restore -1": "bench_restore_pg1",
           "pg_restore -j2": "bench_restore_pgj", "data-backup --jobs 1": "bench_restore_dbs"}
ORDER = ["pg_restore", "pg_restore -j2", "data-backup", "data-backup --jobs 1", "pg_restore -1"]
# Not a restore into the benchmark server: a drill on a scratch server of its own (no target database).
DRILL = "data-backup verify (drill)"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def backends(db: str):
    """A callable finding the PostgreSQL backends connected to db (their process title names it),
    or to its side database `db_restore_<random>` (a parallel `--create` restores beside the name)."""
    needles = (f" {db} ".encode(), f" {db}_restore_".encode())

    def find() -> dict[int, str]:
        out = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        c = f.read()
                except OSError:
                    continue
                if c.startswith(b"postgres: ") and any(n in c for n in needles):
                    out[int(d)] = "postgres backend"
        return out

    return find


class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.work = Path(a.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PGHOST=a.pg_host, PGPORT=str(a.pg_port), PGUSER=a.pg_user)
        self.bindir = Path(a.pg_bin_dir)

    def psql(self, db: str, sql: str) -> str:
        out = subprocess.run([str(self.bindir / "psql"), "-XqAt", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                             env=self.env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def drop_targets(self) -> None:
        for db in TARGETS.values():
            self.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        # `--replace` is not used, so no *_old_* databases can appear, and a *_restore_* side database
        # only while a restore runs (a failed one drops it); sweep anyway.
        for (db,) in [r.split("|") for r in self.psql(
                "postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_restore\\_%'").splitlines() if r]:
            self.psql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def settle(self) -> float:
        """Same starting line for every run: a checkpoint (no earlier restore's dirty pages or WAL
        left to flush during the next one), the page cache synced, then an idle machine."""
        self.psql("postgres", "CHECKPOINT")
        subprocess.run(["sync"], check=False)
        return measure.quiet_machine()

    def prepare(self) -> dict:
        """The two artifacts, made once (not timed): pg_dump -Fc's file and data-backup's backup."""
        dump = self.work / f"{SOURCE}.dump"
        log(f"pg_dump -Fc {SOURCE} -> {dump}")
        subprocess.run([str(self.bindir / "pg_dump"), "-Fc", "-f", str(dump), SOURCE], env=self.env, check=True)
        store = self.work / "store"
        shutil.rmtree(store, ignore_errors=True)
        config = self.work / "config.toml"
        config.write_text(
            f'[store]\nurl = "file://{store}"\n'
            f'[[sources]]\nname = "bench"\nkind = "postgres"\n'
            f'url = "postgres://{self.a.pg_user}@{self.a.pg_host}:{self.a.pg_port}/"\ninstance = "pg"\n'
            f'databases = ["{SOURCE}"]\n[export]\npg_bin_dir = "{self.bindir}"\n'
            # The drill compares every table's rows with the manifest's counts, as a default drill does.
            f'[restore]\ntemp_dir = "{self.work}"\n'
        )
        log(f"data-backup export {SOURCE} -> {store}")
        subprocess.run([self.a.bin, "--config", str(config), "export", "--database", f"bench/pg/{SOURCE}",
                        "--date", DATE], env=self.env, check=True, stdout=subprocess.DEVNULL)
        stored = next(store.rglob("*.dump.zst"))
        source_bytes = int(self.psql("postgres", f"SELECT pg_database_size('{SOURCE}')"))
        return {"config": str(config), "dump": str(dump), "dump_bytes": dump.stat().st_size,
                "stored": str(stored), "stored_bytes": stored.stat().st_size, "source_bytes": source_bytes}

    def commands(self, art: dict) -> dict[str, list[str]]:
        pg_restore = str(self.bindir / "pg_restore")
        url = f"postgres://{self.a.pg_user}@{self.a.pg_host}:{self.a.pg_port}/{TARGETS['data-backup']}"
        return {
            "pg_restore": [pg_restore, "--no-owner", "--no-acl", "-d", TARGETS["pg_restore"], art["dump"]],
            "data-backup": [self.a.bin, "--config", art["config"], "restore", "--database", f"bench/pg/{SOURCE}",
                            "--latest", "--create", "--target", url],
            "pg_restore -1": [pg_restore, "--no-owner", "--no-acl", "--single-transaction", "-d",
                              TARGETS["pg_restore -1"], art["dump"]],
            "pg_restore -j2": [pg_restore, "--no-owner", "--no-acl", "-j", "2", "-d", TARGETS["pg_restore -j2"],
                               art["dump"]],
            "data-backup --jobs 1": [self.a.bin, "--config", art["config"], "restore", "--database",
                                     f"bench/pg/{SOURCE}", "--latest", "--create", "--jobs", "1", "--target",
                                     url.replace(TARGETS["data-backup"], TARGETS["data-backup --jobs 1"])],
            # No [verify] url: the drill starts its own scratch server, as by default.
            DRILL: [self.a.bin, "--config", art["config"], "verify", "--database", f"bench/pg/{SOURCE}"],
        }

    def measure_one(self, name: str, argv: list[str]) -> dict:
        waited = self.settle()
        if not name.startswith("data-backup"):  # data-backup creates its target itself (`--create`), inside its timing
            self.psql("postgres", f"CREATE DATABASE {TARGETS[name]}")
        log(f"{name}: {' '.join(argv)}")
        stem = self.work / name.replace(" ", "_").replace("(", "").replace(")", "")
        with open(f"{stem}.stderr", "w") as err, open(f"{stem}.stdout", "w") as out:
            m = measure.run(argv, stdout=out, stderr=err,
                            extra=backends(TARGETS[name]) if name in TARGETS else lambda: {})
        if m.returncode != 0:
            sys.exit(f"{name} failed ({m.returncode}): see {stem}.stderr")
        log(f"{name}: {m.wall_s:.1f} s")
        result = {"wall_s": m.wall_s, "hwm_kib": m.hwm_kib, "cpu_s": m.cpu_s, "time_maxrss_kib": m.time_maxrss_kib,
                  "waited_s": waited, "sampler_cpu_s": m.sampler_cpu_s}
        if name in ("data-backup", "data-backup --jobs 1"):
            report = json.loads(Path(f"{stem}.stdout").read_text())
            result["parallel_jobs"] = report.get("parallel_jobs")
        if name == DRILL:
            (record,) = json.loads(Path(f"{stem}.stdout").read_text())
            if record["result"] != "ok" or not record["row_counts_compared"]:
                sys.exit(f"the drill did not prove the backup: see {stem}.stdout")
            result["record"] = {k: record.get(k) for k in ("duration_secs", "restore_secs", "restore_jobs",
                                                            "bytes_per_sec", "rows_per_sec", "server")}
        return result

    def check(self) -> dict[str, str]:
        """Every restore holds what the source holds (row count and a hash of each table's keys)."""
        q = ("SELECT string_agg(t || ':' || n, ' ' ORDER BY t) FROM (SELECT 'customers' t, count(*) n FROM customers "
             "UNION ALL SELECT 'orders', count(*) FROM orders UNION ALL SELECT 'events', count(*) FROM events) x")
        want = self.psql(SOURCE, q)
        got = {name: self.psql(db, q) for name, db in TARGETS.items()}
        for name, g in got.items():
            if g != want:
                sys.exit(f"{name} restored {g!r}, the source holds {want!r}")
        return {"source": want}

    def run(self) -> None:
        self.drop_targets()
        art = self.prepare()
        cmds = self.commands(art)
        order = ORDER + [DRILL]
        runs: dict[str, list[dict]] = {name: [] for name in order}
        rows = {}
        for rep in range(self.a.reps):
            # Rotate the order each repetition so drift (checkpoints, other load) falls on all alike.
            for name in order[rep % len(order):] + order[:rep % len(order)]:
                runs[name].append(self.measure_one(name, cmds[name]))
            rows = self.check()
            self.drop_targets()
        results = {name: min(rs, key=lambda m: abs(m["wall_s"] - median([x["wall_s"] for x in rs])))
                   for name, rs in runs.items()}
        self.report(art, results, rows, runs)

    def report(self, art: dict, r: dict, rows: dict, runs: dict) -> None:
        base = r["pg_restore"]["wall_s"]
        par = r["pg_restore -j2"]["wall_s"]
        ours = r["data-backup"]
        drill = r[DRILL]
        lines = [
            f"# bench/restore ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.platform()}; PostgreSQL "
            f"{self.psql('postgres', 'SHOW server_version')}; tools from {self.bindir}.",
            f"Source `{SOURCE}`: {art['source_bytes'] / MB:.0f} MB on disk ({rows['source']}); "
            f"`pg_dump -Fc` file {art['dump_bytes'] / MB:.0f} MB; data-backup's stored `.dump.zst` "
            f"{art['stored_bytes'] / MB:.0f} MB. "
            + ("One run each, in this order" if self.a.reps == 1 else
               f"{self.a.reps} runs each (order rotated), the median run shown")
            + ", each after a CHECKPOINT on an idle machine.",
            "",
            "| command | wall (s) | vs pg_restore | vs pg_restore -j2 | -j | data-backup peak RSS (MiB) "
            "| CPU s: data-backup / pg_restore / psql / backend |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for name in ORDER + [DRILL]:
            m = r[name]
            # /proc's Name is the executable's first 15 bytes (BENCH_BIN may name a copy otherwise).
            proc_name = os.path.basename(self.a.bin)[:15]
            cpu = {("data-backup" if k == proc_name else k): v for k, v in m["cpu_s"].items()}
            hwm = {("data-backup" if k == proc_name else k): v for k, v in m["hwm_kib"].items()}
            rss = f"{mib(hwm.get('data-backup', 0)):.1f}" if name.startswith("data-backup") else "–"
            jobs = {"pg_restore -j2": 2}.get(name) or m.get("parallel_jobs") or (m.get("record") or {}).get(
                "restore_jobs") or 1
            walls = ", ".join(f"{x['wall_s']:.1f}" for x in runs[name])
            lines.append(
                f"| `{name}` | {m['wall_s']:.1f}{f' ({walls})' if len(runs[name]) > 1 else ''} | "
                f"{m['wall_s'] / base:.2f}x | {m['wall_s'] / par:.2f}x | {jobs} | {rss} | "
                f"{cpu.get('data-backup', 0):.1f} / {cpu.get('pg_restore', 0):.1f} / {cpu.get('psql', 0):.1f} / "
                f"{cpu.get('postgres backend', 0):.1f} |"
            )
        ratio = ours["wall_s"] / par
        rec = drill["record"]
        lines += [
            "",
            f"**Target** (issue 15): data-backup restore no slower than 1.1x `pg_restore -j2`: "
            f"{ratio:.2f}x, {'met' if ratio <= 1.1 else 'NOT met'} "
            f"({ours['wall_s'] / base:.2f}x `pg_restore`; the streaming path, `--jobs 1`: "
            f"{r['data-backup --jobs 1']['wall_s'] / par:.2f}x `pg_restore -j2`).",
            f"**RTO** on this machine: {ours['wall_s']:.0f} s for a {art['source_bytes'] / MB:.0f} MB database "
            f"({art['source_bytes'] / MB / ours['wall_s']:.1f} MB of database per second, from the store to a "
            f"committed, indexed copy; the download from a remote bucket is extra).",
            f"**Drill** (default: scratch server start, restore, counts, teardown): {drill['wall_s']:.1f} s wall, "
            f"{drill['wall_s'] / ours['wall_s']:.2f}x the restore alone; its record: restore "
            f"{rec['restore_secs']:.1f} s (-j {rec['restore_jobs']}) of {rec['duration_secs']:.1f} s.",
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        (self.work / "results.md").write_text(text)
        (self.work / "results.json").write_text(
            json.dumps({"artifacts": art, "median_runs": r, "runs": runs, "rows": rows}, indent=2))
        log(f"results in {self.work}/results.md and results.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin", required=True)
    p.add_argument("--pg-bin-dir", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "1")),
                   help="runs of each command (default 1, or BENCH_REPS); the median run is reported")
    Bench(p.parse_args()).run()


if __name__ == "__main__":
    main()
