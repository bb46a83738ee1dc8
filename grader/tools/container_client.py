"""The trusted client for a learner's container: run inside the container's network namespace (nsenter --net),
so it reaches the service on 127.0.0.1 while no port is published on the host.

Reads a plan on stdin: {"port", "health", "ready_seconds", "pid" (the container's main process, host view),
"requests": [...], "load": {...}} (the live-service probe's request and load formats) and prints
{"ready", "ready_seconds", "startup", "responses", "load"} as JSON on stdout.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from service_probe import call, load_test  # noqa: E402


def wait_ready(port: int, health: str, deadline: float, pid: int) -> tuple:
    """(ready, why not, seconds): `health` answers 200 before the deadline, while the container lives."""
    start, last = time.monotonic(), "the port never accepted a connection"
    while time.monotonic() - start < deadline:
        if pid and not os.path.exists(f"/proc/{pid}"):
            return False, "the container exited before it was ready", None
        answer = call(port, {"method": "GET", "path": health, "timeout": 2})
        if answer.get("status") == 200:
            return True, "", round(time.monotonic() - start, 3)
        if "status" in answer:
            last = f"{health} answered {answer['status']}"
        time.sleep(0.2)
    return False, f"not ready after {deadline:.0f} s: {last}", None


def main() -> None:
    plan = json.loads(sys.stdin.read())
    port = int(plan.get("port", 3000))
    ready, why, seconds = wait_ready(port, plan.get("health", "/readyz"), float(plan.get("ready_seconds", 60)),
                                     int(plan.get("pid") or 0))
    result = {"ready": ready, "startup": why, "ready_seconds": seconds, "responses": {}, "load": None}
    if ready:
        for request in plan.get("requests", []):
            result["responses"][request["name"]] = call(port, request)
        if plan.get("load"):
            result["load"] = load_test(port, plan["load"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
