"""The comparison for bench/startup: a minimal FastAPI + uvicorn service that, like a Python backup
service of this kind (the seed's stack), imports the Google client libraries at startup.

Only imports: no client is constructed and no credentials are looked up, so this is the cheapest
start such a service can have.
"""

import google.auth  # noqa: F401
import google.auth.transport.requests  # noqa: F401
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from google.cloud import resourcemanager_v3  # noqa: F401
from google.cloud import storage  # noqa: F401
from google.cloud import tasks_v2  # noqa: F401
from googleapiclient import discovery  # noqa: F401

app = FastAPI()


@app.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"
