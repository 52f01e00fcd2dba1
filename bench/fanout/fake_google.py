"""A fake Google for bench/fanout: one HTTP server answering Resource Manager v3, Cloud SQL Admin v1,
Cloud Asset v1 and Cloud Tasks v2 for a generated organisation, every call after `--latency-ms`,
with per-API quotas enforced per second (a call past `quota/60` in the current second answers 429
RESOURCE_EXHAUSTED with `Retry-After: 1`, as Cloud SQL Admin does). `GET /stats` answers the calls
and 429s per API as JSON.

The organisation: folders/1 → 10 folders → 10 folders each (111 folders, three levels); 10 projects
in each leaf folder (1,000); the projects whose index modulo 10 is below 3 (300) have two
Cloud SQL instances (PostgreSQL and MySQL) of 5 user databases each, plus their system databases:
3,000 tasks.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ROOT = "folders/1"


def build_org():
    folders = {ROOT: []}  # parent -> children
    projects = {}  # parent folder -> [project ids]
    instances = {}  # project -> [instance json]
    n = 0
    for a in range(10):
        l1 = f"folders/1{a:02d}"
        folders[ROOT].append(l1)
        folders[l1] = []
        for b in range(10):
            l2 = f"folders/2{a:02d}{b:02d}"
            folders[l1].append(l2)
            folders[l2] = []
            projects[l2] = []
            for c in range(10):
                pid = f"bench-p{n:04d}"
                projects[l2].append(pid)
                instances[pid] = []
                if n % 10 < 3:
                    for name, version, system in (
                        ("pg", "POSTGRES_16", ["postgres", "cloudsqladmin", "template0", "template1"]),
                        ("my", "MYSQL_8_0", ["mysql", "sys", "information_schema", "performance_schema"]),
                    ):
                        instances[pid].append({
                            "name": name, "project": pid, "state": "RUNNABLE", "instanceType": "CLOUD_SQL_INSTANCE",
                            "databaseVersion": version, "settings": {"activationPolicy": "ALWAYS"},
                            "_databases": system + [f"db{i}" for i in range(5)],
                        })
                n += 1
    return folders, projects, instances


class Api:
    def __init__(self, per_minute: int):
        self.per_second = max(1, per_minute // 60)
        self.lock = threading.Lock()
        self.window = 0
        self.in_window = 0
        self.calls = 0
        self.throttled = 0

    def admit(self) -> bool:
        with self.lock:
            self.calls += 1
            now = int(time.monotonic())
            if now != self.window:
                self.window, self.in_window = now, 0
            self.in_window += 1
            if self.in_window > self.per_second:
                self.throttled += 1
                return False
            return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--rm-per-minute", type=int, default=600)
    ap.add_argument("--sql-per-minute", type=int, default=1800)
    ap.add_argument("--asset-per-minute", type=int, default=120)
    ap.add_argument("--tasks-per-minute", type=int, default=600000)
    ap.add_argument("--page-size", type=int, default=100)
    args = ap.parse_args()
    folders, projects, instances = build_org()
    apis = {
        "resourcemanager": Api(args.rm_per_minute),
        "sqladmin": Api(args.sql_per_minute),
        "cloudasset": Api(args.asset_per_minute),
        "cloudtasks": Api(args.tasks_per_minute),
    }
    created = set()
    created_lock = threading.Lock()
    latency = args.latency_ms / 1000

    def subtree(scope):
        out, todo = [], [scope]
        while todo:
            f = todo.pop()
            out.append(f)
            todo.extend(folders.get(f, []))
        return out

    def paged(items, q, size_key="pageSize"):
        size = int((q.get(size_key) or ["0"])[0] or 0) or args.page_size
        start = int((q.get("pageToken") or ["0"])[0] or 0)
        end = min(start + size, len(items))
        return items[start:end], (str(end) if end < len(items) else "")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, code, body, headers=()):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def throttle(self):
            self.send(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded",
                                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                   "reason": "RATE_LIMIT_EXCEEDED"}]}}, [("retry-after", "1")])

        def api_of(self, path):
            if path.startswith("/v3/"):
                return "resourcemanager"
            if path.endswith(":searchAllResources"):
                return "cloudasset"
            if path.startswith("/v2/"):
                return "cloudtasks"
            return "sqladmin"

        def handle_any(self, body):
            u = urlparse(self.path)
            if u.path == "/stats":
                return self.send(200, {k: {"calls": a.calls, "throttled": a.throttled} for k, a in apis.items()})
            api = self.api_of(u.path)
            time.sleep(latency)
            if not apis[api].admit():
                return self.throttle()
            q = parse_qs(u.query, keep_blank_values=True)
            p = u.path
            if p == "/v3/folders":
                items, nxt = paged([{"name": f, "parent": q["parent"][0], "state": "ACTIVE"}
                                    for f in folders.get(q["parent"][0], [])], q)
                return self.send(200, {"folders": items, "nextPageToken": nxt})
            if p == "/v3/projects":
                items, nxt = paged([{"name": f"projects/{i}", "projectId": pid, "parent": q["parent"][0], "state": "ACTIVE"}
                                    for i, pid in enumerate(projects.get(q["parent"][0], []))], q)
                return self.send(200, {"projects": items, "nextPageToken": nxt})
            if p.endswith(":searchAllResources"):
                scope = p[len("/v1/"):-len(":searchAllResources")]
                found = []
                for f in subtree(scope):
                    for pid in projects.get(f, []):
                        for i in instances[pid]:
                            found.append({
                                "name": f"//cloudsql.googleapis.com/projects/{pid}/instances/{i['name']}",
                                "assetType": "sqladmin.googleapis.com/Instance", "project": "projects/1",
                                "state": i["state"], "additionalAttributes": {
                                    "databaseVersion": i["databaseVersion"], "instanceType": i["instanceType"],
                                    "activationPolicy": "ALWAYS"}})
                items, nxt = paged(found, q)
                return self.send(200, {"results": items, "nextPageToken": nxt})
            if p.startswith("/v2/"):
                name = body.get("task", {}).get("name", "")
                with created_lock:
                    if name in created:
                        return self.send(409, {"error": {"code": 409, "status": "ALREADY_EXISTS", "message": "exists"}})
                    created.add(name)
                return self.send(200, body.get("task", {}))
            parts = p.strip("/").split("/")  # v1 projects P instances [I databases]
            if len(parts) == 4:
                items, nxt = paged([{k: v for k, v in i.items() if not k.startswith("_")} for i in instances.get(parts[2], [])],
                                   q, "maxResults")
                return self.send(200, {"kind": "sql#instancesList", "items": items, "nextPageToken": nxt})
            if len(parts) == 6 and parts[5] == "databases":
                inst = next((i for i in instances.get(parts[2], []) if i["name"] == parts[4]), None)
                if inst is None:
                    return self.send(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "no instance"}})
                return self.send(200, {"kind": "sql#databasesList",
                                       "items": [{"name": d, "instance": parts[4], "project": parts[2]} for d in inst["_databases"]]})
            return self.send(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": p}})

        def do_GET(self):
            self.handle_any({})

        def do_POST(self):
            n = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(n) if n else b"{}"
            self.handle_any(json.loads(raw or b"{}"))

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

    srv = Server(("127.0.0.1", args.port), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
