"""bench/dump: data-backup export against pg_dump -Fc and the pg_dump -Z0 floor, plus a zstd sweep.

Run through bench/dump/run.sh, which builds the binary and creates the databases first.
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


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def backends(db: str):
    """A callable finding the PostgreSQL backends connected to db (their process title names it)."""
    needle = f" {db} ".encode()

    def find() -> dict[int, str]:
        out = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        c = f.read()
                except OSError:
                    continue
                # The backend's title names the database; parallel workers (row counts may use
                # them) name only their leader.
                if c.startswith(b"postgres: ") and (needle in c or c.startswith(b"postgres: parallel worker")):
                    out[int(d)] = "postgres backend"
        return out

    return find


class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.work = Path(a.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PGHOST=a.pg_host, PGPORT=str(a.pg_port), PGUSER=a.pg_user)
        self.env.pop("PGPASSWORD", None)
        self.waited = 0.0
        self.redone = 0

    # --- the three commands -------------------------------------------------------------------
    def config(self, level: int, threads: int, extra: str = "") -> Path:
        path = self.work / f"config-l{level}-t{threads}{'-' + extra.split()[0] if extra else ''}.toml"
        path.write_text(
            f"""bind = "127.0.0.1:0"
[store]
url = "file://{self.work}/store"
[[sources]]
name = "bench"
kind = "postgres"
url = "postgres://{self.a.pg_user}@{self.a.pg_host}:{self.a.pg_port}/"
instance = "pg"
[export]
zstd_level = {level}
zstd_threads = {threads}
pg_bin_dir = "{Path(self.a.pg_dump).parent}"
{extra}
"""
        )
        return path

    def _quiet(self) -> None:
        self.waited += measure.quiet_machine()

    def measured(self, fn, *args) -> dict:
        """One measurement on a quiet machine: measured again (up to 5 times in all) when a compiler
        started meanwhile or other work took more than max(0.5 s, 10% of the wall time) of CPU."""
        for attempt in range(5):
            r = fn(*args)
            limit = max(0.5, 0.10 * r["wall_s"])
            if not measure.compilers_running() and r["foreign_cpu_s"] <= limit:
                return r
            self.redone += 1
            log(f"other work on the machine during the run ({r['foreign_cpu_s']:.1f} CPU s): measuring again")
        r["noisy"] = True
        return r

    def export(self, db: str, level: int, threads: int, extra: str = "", probe: bool = False) -> dict | None:
        store = self.work / "store"
        shutil.rmtree(store, ignore_errors=True)  # the export is idempotent: a fresh store every run
        cfg = self.config(level, threads, extra)
        self._quiet()
        with open(self.work / "export.stdout", "wb") as out, open(self.work / "export.stderr", "wb") as err:
            m = measure.run(
                [self.a.bin, "--config", str(cfg), "export", "--database", f"bench/pg/{db}", "--date", self.a.date],
                stdout=out,
                stderr=err,
                env=self.env,
                extra=backends(db),
            )
        if m.returncode != 0 and probe:
            return None
        if m.returncode != 0:
            sys.exit(f"data-backup export failed ({m.returncode}):\n{(self.work / 'export.stderr').read_text()[-3000:]}")
        manifest = json.loads((self.work / "export.stdout").read_text())
        dumps = list(store.rglob("*.dump.zst"))
        if len(dumps) != 1:
            sys.exit(f"expected one .dump.zst in {store}, found {dumps}")
        size = dumps[0].stat().st_size
        if size != manifest["bytes"]:
            sys.exit(f"stored size {size} != manifest bytes {manifest['bytes']}")
        comm = Path(self.a.bin).name[:15]  # the kernel's process name: the file name, cut at 15 bytes
        if comm not in m.hwm_kib:
            sys.exit("the sampler never saw the data-backup process")
        return {
            "wall_s": m.wall_s,
            "time_M_kib": m.time_maxrss_kib,
            "own_hwm_kib": m.hwm_kib[comm],
            "pg_dump_hwm_kib": m.hwm_kib.get("pg_dump", 0),
            "own_cpu_s": m.cpu_s.get(comm, 0.0),
            "pg_dump_cpu_s": m.cpu_s.get("pg_dump", 0.0),
            "backend_cpu_s": m.cpu_s.get("postgres backend", 0.0),
            "sampler_cpu_s": m.sampler_cpu_s,
            "foreign_cpu_s": m.foreign_cpu_s,
            "bytes": size,
            "raw_bytes": manifest.get("raw_bytes"),
            "path": str(dumps[0]),
        }

    def pg_dump_fc(self, db: str) -> dict:
        out = self.work / "pg_dump.Fc"
        out.unlink(missing_ok=True)
        self._quiet()
        m = measure.run([self.a.pg_dump, "-Fc", "--no-password", "-f", str(out), db], env=self.env, extra=backends(db))
        if m.returncode != 0:
            sys.exit("pg_dump -Fc failed")
        size = out.stat().st_size
        out.unlink()
        return {"wall_s": m.wall_s, "time_M_kib": m.time_maxrss_kib, "own_hwm_kib": m.hwm_kib.get("pg_dump", 0),
                "own_cpu_s": m.cpu_s.get("pg_dump", 0.0), "backend_cpu_s": m.cpu_s.get("postgres backend", 0.0),
                "sampler_cpu_s": m.sampler_cpu_s, "foreign_cpu_s": m.foreign_cpu_s, "bytes": size}

    def floor(self, db: str) -> dict:
        self._quiet()
        with open(os.devnull, "wb") as devnull:
            m = measure.run([self.a.pg_dump, "-Fc", "-Z0", "--no-password", db], stdout=devnull, env=self.env,
                            extra=backends(db))
        if m.returncode != 0:
            sys.exit("pg_dump -Fc -Z0 failed")
        return {"wall_s": m.wall_s, "time_M_kib": m.time_maxrss_kib, "own_hwm_kib": m.hwm_kib.get("pg_dump", 0),
                "own_cpu_s": m.cpu_s.get("pg_dump", 0.0), "backend_cpu_s": m.cpu_s.get("postgres backend", 0.0),
                "sampler_cpu_s": m.sampler_cpu_s, "foreign_cpu_s": m.foreign_cpu_s, "bytes": None}

    def db_size(self, db: str) -> int:
        out = subprocess.run(
            ["psql", "-XAtc", f"SELECT pg_database_size('{db}')", "postgres"],
            env=self.env, check=True, capture_output=True, text=True,
        )
        return int(out.stdout.strip())


def summarize(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float)) and runs[0][k] is not None]
    s = {k: median([r[k] for r in runs]) for k in keys}
    s["runs"] = runs
    return s


def fmt_runs(runs: list[dict], key: str, scale=1.0, digits=2) -> str:
    return " / ".join(f"{r[key] * scale:.{digits}f}" for r in runs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--pg-dump", required=True)
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument("--db1", default="bench_dump_1x")
    p.add_argument("--db2", default="bench_dump_2x")
    p.add_argument("--work", default="/tmp/bench-dump")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--level", type=int, default=2, help="zstd_level of the main comparison (the default's)")
    p.add_argument("--threads", type=int, default=0, help="zstd_threads of the main comparison")
    p.add_argument("--sweep-levels", default="1,2,3,6")
    p.add_argument("--sweep-threads", default="0,1,2")
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--date", default="2026-01-05")
    a = p.parse_args()
    b = Bench(a)
    reps = a.reps
    started = dt.datetime.now().astimezone()
    pg_version = subprocess.run([a.pg_dump, "--version"], capture_output=True, text=True).stdout.strip()
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    sizes = {db: b.db_size(db) for db in (a.db1, a.db2)}
    log(f"databases: {a.db1} {sizes[a.db1] / MB:.0f} MB, {a.db2} {sizes[a.db2] / MB:.0f} MB; {reps} runs each, median")

    # Warm-up (not counted): page cache, binary, and one check that the stored dump restores.
    log("warm-up: floor and one export of 1x; checking the dump lists with pg_restore")
    b.floor(a.db1)
    w = b.export(a.db1, a.level, a.threads)
    listing = subprocess.run(f"zstd -dc '{w['path']}' | {Path(a.pg_dump).parent}/pg_restore -l",
                             shell=True, capture_output=True, text=True, check=True).stdout
    n_data = sum(1 for line in listing.splitlines() if " TABLE DATA " in line)
    if n_data < 4:
        sys.exit(f"the stored dump does not list its table data:\n{listing}")

    # Binaries that count rows per table before the dump (export.row_counts, default on) are also
    # measured with the counting off, to show its cost; older binaries reject the key.
    no_counts = "row_counts = false"
    has_counts = "row_counts" in json.loads((b.work / "export.stdout").read_text())
    if has_counts and b.export(a.db1, a.level, a.threads, no_counts, probe=True) is None:
        has_counts = False
    main_runs = {"export": [], "pg_dump -Fc": [], "floor": [], "export, row_counts off": []}
    for i in range(reps):
        log(f"1x run {i + 1}/{reps}: export, pg_dump -Fc, floor" + (", export with row_counts off" if has_counts else ""))
        main_runs["export"].append(b.measured(b.export, a.db1, a.level, a.threads))
        main_runs["pg_dump -Fc"].append(b.measured(b.pg_dump_fc, a.db1))
        main_runs["floor"].append(b.measured(b.floor, a.db1))
        if has_counts:
            main_runs["export, row_counts off"].append(b.measured(b.export, a.db1, a.level, a.threads, no_counts))
    log("2x: warm-up floor, then exports")
    b.floor(a.db2)
    runs2 = []
    for i in range(reps):
        log(f"2x run {i + 1}/{reps}: export")
        runs2.append(b.measured(b.export, a.db2, a.level, a.threads))

    sweep: dict[tuple[int, int], list[dict]] = {}
    if not a.no_sweep:
        levels = [int(x) for x in a.sweep_levels.split(",")]
        threads = [int(x) for x in a.sweep_threads.split(",")]
        for i in range(reps):
            for lv in levels:
                for th in threads:
                    log(f"sweep run {i + 1}/{reps}: level {lv} threads {th}")
                    sweep.setdefault((lv, th), []).append(b.measured(b.export, a.db1, lv, th))

    ex, fc, fl = (summarize(main_runs[k]) for k in ("export", "pg_dump -Fc", "floor"))
    ex2 = summarize(runs2)
    nc = summarize(main_runs["export, row_counts off"]) if has_counts else None
    res = {
        "started": started.isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model, "kernel": platform.release(),
                    "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "pg_dump": pg_version,
        "db_bytes": sizes,
        "config": {"zstd_level": a.level, "zstd_threads": a.threads},
        "export_1x": ex, "pg_dump_fc": fc, "floor": fl, "export_2x": ex2, "export_1x_row_counts_off": nc,
        "sweep": {f"{lv},{th}": summarize(r) for (lv, th), r in sweep.items()},
        "waited_for_quiet_s": round(b.waited, 1),
        "redone": b.redone,
    }
    (b.work / "results.json").write_text(json.dumps(res, indent=2))
    report = render(res, a)
    (b.work / "results.md").write_text(report)
    print(report)
    log(f"results: {b.work}/results.json and results.md")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(res: dict, a) -> str:
    ex, fc, fl, ex2 = res["export_1x"], res["pg_dump_fc"], res["floor"], res["export_2x"]
    raw = ex["raw_bytes"]
    L = []
    L.append(f"bench/dump — {res['started']} — {res['machine']['cores']} cores ({res['machine']['cpu']}), "
             f"{res['machine']['mem_gib']} GiB RAM, {res['pg_dump']}")
    L.append(f"databases: {a.db1} {res['db_bytes'][a.db1] / MB:.0f} MB ({res['db_bytes'][a.db1] / 2**20:.0f} MiB) on disk ({raw / MB:.0f} MB as an "
             f"uncompressed custom-format dump), {a.db2} {res['db_bytes'][a.db2] / MB:.0f} MB ({res['db_bytes'][a.db2] / 2**20:.0f} MiB); "
             f"median of {a.reps} runs, page cache warm; export at zstd_level={a.level}, zstd_threads={a.threads}")
    L.append("")
    L.append("| command | wall s | output MB | peak RSS MiB | /usr/bin/time %M MiB | CPU s: ours + pg_dump + PG backend | runs (wall s) |")
    L.append("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    L.append(f"| data-backup export (1x) | {ex['wall_s']:.2f} | {ex['bytes'] / MB:.1f} | {mib(ex['own_hwm_kib']):.1f} (data-backup's own; its pg_dump child {mib(ex['pg_dump_hwm_kib']):.1f}) | {mib(ex['time_M_kib']):.1f} | {ex['own_cpu_s']:.1f} + {ex['pg_dump_cpu_s']:.1f} + {ex['backend_cpu_s']:.1f} | {fmt_runs(ex['runs'], 'wall_s')} |")
    L.append(f"| pg_dump -Fc, gzip default (1x) | {fc['wall_s']:.2f} | {fc['bytes'] / MB:.1f} | {mib(fc['own_hwm_kib']):.1f} | {mib(fc['time_M_kib']):.1f} | – + {fc['own_cpu_s']:.1f} + {fc['backend_cpu_s']:.1f} | {fmt_runs(fc['runs'], 'wall_s')} |")
    L.append(f"| floor: pg_dump -Fc -Z0 > /dev/null (1x) | {fl['wall_s']:.2f} | ({raw / MB:.1f} raw) | {mib(fl['own_hwm_kib']):.1f} | {mib(fl['time_M_kib']):.1f} | – + {fl['own_cpu_s']:.1f} + {fl['backend_cpu_s']:.1f} | {fmt_runs(fl['runs'], 'wall_s')} |")
    nc = res.get("export_1x_row_counts_off")
    if nc:
        L.append(f"| data-backup export, row_counts = false (1x) | {nc['wall_s']:.2f} | {nc['bytes'] / MB:.1f} | {mib(nc['own_hwm_kib']):.1f} (pg_dump {mib(nc['pg_dump_hwm_kib']):.1f}) | {mib(nc['time_M_kib']):.1f} | {nc['own_cpu_s']:.1f} + {nc['pg_dump_cpu_s']:.1f} + {nc['backend_cpu_s']:.1f} | {fmt_runs(nc['runs'], 'wall_s')} |")
    L.append(f"| data-backup export (2x) | {ex2['wall_s']:.2f} | {ex2['bytes'] / MB:.1f} | {mib(ex2['own_hwm_kib']):.1f} (pg_dump {mib(ex2['pg_dump_hwm_kib']):.1f}) | {mib(ex2['time_M_kib']):.1f} | {ex2['own_cpu_s']:.1f} + {ex2['pg_dump_cpu_s']:.1f} + {ex2['backend_cpu_s']:.1f} | {fmt_runs(ex2['runs'], 'wall_s')} |")
    L.append("")
    speed = fc["wall_s"] / ex["wall_s"]
    vs_floor = ex["wall_s"] / fl["wall_s"]
    size = ex["bytes"] / fc["bytes"]
    rss1, rss2 = mib(ex["own_hwm_kib"]), mib(ex2["own_hwm_kib"])
    grow = rss2 - rss1
    unchanged = abs(grow) <= max(2.0, 0.10 * rss1)
    L.append("| ratio | value | target | verdict |")
    L.append("| --- | ---: | --- | --- |")
    L.append(f"| speed vs pg_dump -Fc (its wall / ours) | {speed:.2f}x | >= 2.5x | {verdict(speed >= 2.5)} |")
    L.append(f"| wall vs floor (ours / floor) | {vs_floor:.2f}x | <= 1.3x | {verdict(vs_floor <= 1.3)} |")
    if nc:
        L.append(f"| speed vs pg_dump -Fc, row_counts = false | {fc['wall_s'] / nc['wall_s']:.2f}x | >= 2.5x | {verdict(fc['wall_s'] / nc['wall_s'] >= 2.5)} |")
        L.append(f"| wall vs floor, row_counts = false | {nc['wall_s'] / fl['wall_s']:.2f}x | <= 1.3x | {verdict(nc['wall_s'] / fl['wall_s'] <= 1.3)} |")
    L.append(f"| size vs pg_dump -Fc (ours / its) | {size:.3f} | <= 1.0 | {verdict(size <= 1.0)} |")
    L.append(f"| data-backup peak RSS, 1x | {rss1:.1f} MiB | < 64 MiB | {verdict(rss1 < 64)} |")
    L.append(f"| data-backup peak RSS, 2x | {rss2:.1f} MiB ({grow:+.1f}) | unchanged (within 10% / 2 MiB) | {verdict(unchanged and rss2 < 64)} |")
    if res["sweep"]:
        L.append("")
        L.append(f"zstd sweep on {a.db1} (median of {a.reps}; ratios against the pg_dump -Fc and floor medians above):")
        L.append("")
        L.append("| zstd_level | zstd_threads | wall s | vs -Fc | vs floor | output MB | size / -Fc | peak RSS MiB | CPU s: ours + pg_dump + backend | runs (wall s) |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        rows = []
        for key, s in res["sweep"].items():
            lv, th = (int(x) for x in key.split(","))
            rows.append((lv, th, s))
            L.append(f"| {lv} | {th} | {s['wall_s']:.2f} | {fc['wall_s'] / s['wall_s']:.2f}x | {s['wall_s'] / fl['wall_s']:.2f}x | "
                     f"{s['bytes'] / MB:.1f} | {s['bytes'] / fc['bytes']:.3f} | {mib(s['own_hwm_kib']):.1f} | "
                     f"{s['own_cpu_s']:.1f} + {s['pg_dump_cpu_s']:.1f} + {s['backend_cpu_s']:.1f} | {fmt_runs(s['runs'], 'wall_s')} |")
        ok = [(lv, th, s) for lv, th, s in rows if s["bytes"] <= fc["bytes"] and mib(s["own_hwm_kib"]) < 64]
        L.append("")
        if ok:
            fastest = min(s["wall_s"] for _, _, s in ok)
            # Among the configurations within 5% of the fastest that meet the size and memory targets,
            # prefer fewer threads (a Cloud Run instance may have one vCPU), then the smaller output.
            near = [r for r in ok if r[2]["wall_s"] <= fastest * 1.05]
            lv, th, s = min(near, key=lambda r: (r[1], r[2]["bytes"]))
            L.append(f"recommendation: zstd_level={lv}, zstd_threads={th} — {s['wall_s']:.2f} s, {s['bytes'] / MB:.1f} MB "
                     f"({s['bytes'] / fc['bytes']:.3f} of pg_dump -Fc), {mib(s['own_hwm_kib']):.1f} MiB: the fewest threads "
                     f"within 5% of the fastest configuration that is no larger than pg_dump -Fc and under 64 MiB.")
        else:
            L.append("recommendation: none of the swept configurations met both the size and the memory target")
    sampler = [r["sampler_cpu_s"] / r["wall_s"] for k in ("export_1x", "pg_dump_fc", "floor") for r in res[k]["runs"]]
    if nc:
        L.append("")
        L.append("(export.row_counts, on by default, counts the rows of every table in the dump's snapshot while "
                 "pg_dump runs; the row_counts = false line shows what that costs)")
    L.append("")
    L.append(f"(the RSS/CPU sampler itself used {100 * median(sampler):.1f}% of one core while sampling, median)")
    if res["waited_for_quiet_s"] > 1 or res["redone"]:
        L.append("")
        L.append(f"(waited {res['waited_for_quiet_s']:.0f} s in total for the machine to be idle before runs; "
                 f"{res['redone']} run(s) measured again because other work ran during them)")
    noisy = sum(1 for k in ("export_1x", "pg_dump_fc", "floor", "export_2x") for r in res[k]["runs"] if r.get("noisy"))
    noisy += sum(1 for s in res["sweep"].values() for r in s["runs"] if r.get("noisy"))
    if noisy:
        L.append(f"WARNING: {noisy} run(s) kept although other work still ran during them after 5 attempts")
    foreign = [r["foreign_cpu_s"] for k in ("export_1x", "pg_dump_fc", "floor") for r in res[k]["runs"]]
    L.append(f"(CPU used by other work on the machine during the runs: median {median(foreign):.2f} s, max {max(foreign):.2f} s)")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
