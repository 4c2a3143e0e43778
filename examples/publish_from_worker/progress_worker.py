"""A background job that publishes its progress to a page: ``python progress_worker.py ID``.

Any process that can make an HTTP request can do this, a Celery task or a
cron job as well as this script: each step is one
``Client.publish("jobs:ID", {"done", "total"})``, and the last one says
``finished`` with the result. The page subscribed to ``jobs:ID`` shows it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

from orbiter import Client

STEPS = int(os.environ.get("JOB_STEPS", "20"))
STEP_SECONDS = float(os.environ.get("JOB_STEP_SECONDS", "0.1"))


def run(client: Client, job: str, steps: int = STEPS) -> str:
    """The job: ``steps`` rounds of hashing, each published as it completes."""
    digest = hashlib.sha256(job.encode())
    for done in range(1, steps + 1):
        digest = hashlib.sha256(digest.digest())
        time.sleep(STEP_SECONDS)  # the work a real job would do
        if done < steps:
            client.publish(f"jobs:{job}", {"done": done, "total": steps})
    result = digest.hexdigest()[:12]
    client.publish(
        f"jobs:{job}", {"done": steps, "total": steps, "finished": True, "result": result}
    )
    return result


def main() -> None:
    job = sys.argv[1]
    client = Client(os.environ.get("ORBITER_URL", "http://127.0.0.1:8000"))
    print(f"job {job}: {run(client, job)}", flush=True)


if __name__ == "__main__":
    main()
