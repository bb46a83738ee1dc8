"""The live-service probe: start a learner's server, wait until it is ready, talk to it as a client, stop it.

Runs inside the probe sandbox (its own network namespace: loopback only, nothing reaches the host). The
server is learner code, so it runs one level further in (harness.inner_command: its own PID namespace,
another uid, the probe's inputs and output hidden), sharing only the loopback network with this trusted
client. Input `plan` (a JSON string) says:

    {"command": [argv], "cwd": "work-relative dir", "env": {..}, "port": 8080, "health": "/healthz",
     "ready_seconds": 30, "requests": [{"name", "method", "path", "json" | "body", "headers", "timeout", "grep"}],
     "load": {"method", "path", "json", "requests": 200, "concurrency": 20, "seconds": 20},
     "stop_grace": 5, "files": {"name.py": "source"}, "not_needed": ["torch"],
     "quiet": ["module:Class.method"], "give_up_on": ["Exception in thread"]}

"{work}" in an env value becomes the work dir's path as the server sees it, "{home}" the server's own writable
folder (where a probe can read what it wrote, e.g. a trace file). `files` are written into a fresh
folder whose path replaces "{files}" in the command (a service the grader brings,
e.g. a reference to compare with); `not_needed` packages cannot be imported by the server's Python processes
(a sitecustomize on its PYTHONPATH, as in graded notebooks: skops would otherwise load PyTorch for seconds);
`quiet` renderers draw nothing in them (harness.QUIETER: figures no check reads).
`give_up_on`: texts that, once in the server's log before it is ready, mean it never will be (a loader
thread's traceback): the wait ends GIVE_UP_GRACE seconds later instead of at ready_seconds.

result.json: {"ready": bool, "ready_seconds": float, "startup": why it never became ready (or ""),
"responses": {name: {"status", "json" | "text", "headers", "seconds"} | {"error"}}, "load": {...},
"stop": {"exited_before_stop", "stopped_in", "ignored_sigterm", "daemons", "left_running"}, "stderr_tail"}.
Whatever happens, every process of the server is killed before the result is written.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import inner_command, inner_sandbox_available, probe_main, write_site  # noqa: E402

BODY_CAP = 64 * 1024
LOAD_CAP = 5000  # requests, whatever the plan asks
GIVE_UP_GRACE = 15.0  # seconds a server still gets once its log shows a give_up_on text (longer than a slow
# model load, so a correct service with some other thread that died is not failed for it)


def add_arguments(parser) -> None:
    parser.add_argument("--label", default="")  # only makes the grader's cache key differ between calls


def run(args, inputs) -> dict:
    plan = json.loads(str(inputs["plan"][()]))
    server = Server(plan, Path(args.work), hidden=[args.out, args.input])
    result = {"ready": False, "ready_seconds": None, "startup": "", "responses": {}, "load": None, "stop": None,
              "nested": server.nested}
    try:
        server.start()
        ready, why, seconds = server.wait_ready(float(plan.get("ready_seconds", 30)), plan.get("health", "/healthz"),
                                                [str(text) for text in plan.get("give_up_on", [])])
        result.update(ready=ready, startup=why, ready_seconds=seconds)
        if ready:
            for request in plan.get("requests", []):
                result["responses"][request["name"]] = call(server.port, request)
            if plan.get("load"):
                result["load"] = load_test(server.port, plan["load"])
        result["stop"] = server.stop(float(plan.get("stop_grace", 5)))
    finally:
        server.kill()
    result["stderr_tail"] = server.stderr_tail()
    return result


class Server:
    """The learner's server process (in a nested sandbox where bubblewrap nests)."""

    def __init__(self, plan: dict, work: Path, hidden: list):
        self.plan, self.work, self.port = plan, work, int(plan.get("port", 8080))
        self.nested = inner_sandbox_available()
        self.hidden = hidden
        self.proc = None
        self.log = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
        self.home = tempfile.mkdtemp(prefix="server-home-")  # the server's only writable place

    def start(self) -> None:
        home = self.home
        files = os.path.join(home, "files")
        os.mkdir(files)
        for name, source in self.plan.get("files", {}).items():
            Path(files, os.path.basename(str(name))).write_text(str(source), encoding="utf-8")
        argv = [str(a).replace("{files}", files) for a in self.plan["command"]]
        env = {**os.environ, "PORT": str(self.port),
               **{str(k): str(v).replace("{work}", str(self.work)).replace("{home}", home)
                  for k, v in self.plan.get("env", {}).items()}}
        blocked = tuple(str(m) for m in self.plan.get("not_needed", []))
        quiet = tuple(str(m) for m in self.plan.get("quiet", []))
        if (blocked or quiet) and not self.nested:  # nested, the inner sandbox's sitecustomize does both
            site = os.path.join(home, "site")
            os.mkdir(site)
            write_site(site, blocked, quiet)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH", "")) if p)
        cwd = self.work / self.plan.get("cwd", ".")
        env["HOME"] = home
        command = (inner_command(argv, writable=[home], hidden=self.hidden, pythonpath=env.get("PYTHONPATH", ""),
                                 not_needed=blocked, quiet=quiet) if self.nested else argv)
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, deadline_seconds: float, health: str, give_up_on: list = ()) -> tuple:
        """(ready, why not, seconds): the port accepts and `health` answers 200 before the deadline."""
        start = time.monotonic()
        last, gave_up = "the port never accepted a connection", ""
        while time.monotonic() - start < deadline_seconds:
            seen = None if gave_up else next((t for t in give_up_on if t in self.stderr_tail(64 * 1024)), None)
            if seen:
                deadline_seconds = min(deadline_seconds, time.monotonic() - start + GIVE_UP_GRACE)
                gave_up = f"; its log shows {seen!r}, after which it cannot become ready"
            if not self.alive():
                return False, f"the server exited with status {self.proc.returncode} before it was ready", None
            answer = call(self.port, {"method": "GET", "path": health, "timeout": 2})
            if answer.get("status") == 200:
                return True, "", round(time.monotonic() - start, 3)
            if "status" in answer:
                last = f"{health} answered {answer['status']}"
            time.sleep(0.1)
        return False, f"not ready after {deadline_seconds:.0f} s: {last}{gave_up}", None

    def learner_pids(self) -> list:
        """The learner's processes: descendants of our child (bwrap's inner init is one of them)."""
        if self.proc is None:
            return []
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        found, frontier = [], [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            children = [p for p, parent in parents.items() if parent == pid]
            found.extend(children)
            frontier.extend(children)
        return found

    def _init(self):
        """bwrap's init in the inner PID namespace (nested), whose children are the learner's orphans too."""
        inits = [p for p in self.learner_pids() if _parent(p) == self.proc.pid]
        return inits[0] if inits else None

    def main_pid(self):
        """The learner's own first process: the oldest child of bwrap's inner init, or our child itself."""
        if not self.nested:
            return self.proc.pid
        init = self._init()
        children = sorted((_started(p), p) for p in self.learner_pids() if init and _parent(p) == init)
        return children[0][1] if children else None

    def daemons(self, main: int) -> int:
        """Processes the server started that are no longer its descendants (they daemonised)."""
        if not self.nested:
            return 0
        init = self._init()
        return len([p for p in self.learner_pids() if _parent(p) == init and p != main and _running(p)])

    def stop(self, grace: float) -> dict:
        """SIGTERM the server, wait `grace` seconds; what it did, and what it left running."""
        if not self.alive():
            return {"exited_before_stop": True, "exit": self.proc.returncode, "ignored_sigterm": False,
                    "daemons": 0, "left_running": 0}
        main = self.main_pid()
        if main is None or not _running(main):  # gone, or a zombie its init has not reaped yet (a busy machine)
            return {"exited_before_stop": True, "exit": None, "ignored_sigterm": False, "daemons": 0,
                    "left_running": len([p for p in self.learner_pids() if _running(p) and p != self._init()])}
        daemons = self.daemons(main)
        start = time.monotonic()
        _signal(main, signal.SIGTERM)
        while time.monotonic() - start < grace and _running(main):
            time.sleep(0.05)
        stopped = not _running(main)
        time.sleep(0.1)  # let the inner init notice its child's exit (it then ends the namespace)
        init = self._init() if self.nested else None
        left = [p for p in self.learner_pids() if _running(p) and p not in (main, init)]
        return {"exited_before_stop": False, "stopped_in": round(time.monotonic() - start, 3) if stopped else None,
                "ignored_sigterm": not stopped, "daemons": daemons, "left_running": len(left)}

    def kill(self) -> None:
        """Every process of the server, gone (the inner PID namespace dies with its init)."""
        if self.proc is None:
            return
        for pid in self.learner_pids() + [self.proc.pid]:
            _signal(pid, signal.SIGKILL)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def stderr_tail(self, chars: int = 3000) -> str:
        try:
            self.log.flush()
            data = Path(self.log.name).read_bytes()
        except OSError:
            return ""
        return data[-chars:].decode("utf-8", "replace")


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _started(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def call(port: int, request: dict) -> dict:
    """One HTTP request to 127.0.0.1:port; the answer (status, parsed JSON or text, a few headers, seconds)."""
    import http.client

    method, path = request.get("method", "GET"), request.get("path", "/")
    headers = dict(request.get("headers", {}))
    body = request.get("body")
    if "json" in request:
        body = json.dumps(request["json"])
        headers.setdefault("Content-Type", "application/json")
    start = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=float(request.get("timeout", 10)))
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(BODY_CAP + 1)
        answer = {"status": response.status, "seconds": round(time.monotonic() - start, 4),
                  "headers": {k.lower(): v[:200] for k, v in response.getheaders()
                              if k.lower() in ("content-type", "content-length", "retry-after")},
                  "truncated": len(data) > BODY_CAP}
        text = data[:BODY_CAP].decode("utf-8", "replace")
        if request.get("grep"):  # only the lines that name it (a metric in a long /metrics page)
            text = "\n".join(line for line in text.splitlines() if str(request["grep"]) in line)
        try:
            answer["json"] = json.loads(text)
        except ValueError:
            answer["text"] = text[:4000]
        return answer
    except (OSError, http.client.HTTPException) as err:
        return {"error": f"{type(err).__name__}: {err}"[:300], "seconds": round(time.monotonic() - start, 4)}
    finally:
        connection.close()


def load_test(port: int, spec: dict) -> dict:
    """A bounded closed-loop load test: `concurrency` clients, `requests` in all or `seconds`, whichever first."""
    total = min(int(spec.get("requests", 200)), LOAD_CAP)
    concurrency = max(1, min(int(spec.get("concurrency", 10)), 64))
    until = time.monotonic() + float(spec.get("seconds", 20))
    request = {k: v for k, v in spec.items() if k in ("method", "path", "json", "body", "headers")}
    request["timeout"] = float(spec.get("timeout", 10))
    lock, sent, samples = threading.Lock(), [0], []

    def client() -> None:
        while True:
            with lock:
                if sent[0] >= total or time.monotonic() >= until:
                    return
                sent[0] += 1
            answer = call(port, request)
            with lock:
                samples.append((answer.get("status"), answer["seconds"], "error" in answer))

    start = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()) + request["timeout"] + 1)
    elapsed = time.monotonic() - start
    latencies = sorted(s[1] for s in samples if not s[2] and s[0] == 200)

    def percentile(q: float):
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 4) if latencies else None

    statuses = {}
    for status, _, failed in samples:
        key = "error" if failed else str(status)
        statuses[key] = statuses.get(key, 0) + 1
    return {"sent": len(samples), "ok": len(latencies), "statuses": statuses, "seconds": round(elapsed, 3),
            "throughput": round(len(samples) / elapsed, 2) if elapsed else None,
            "p50": percentile(0.50), "p95": percentile(0.95), "p99": percentile(0.99)}


if __name__ == "__main__":
    probe_main(run, add_arguments)
