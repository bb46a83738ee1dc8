"""Malicious and broken lab-03 submissions, generated from the lab and its reference solution.

Each case is a `Case`: a file to submit (bytes, or a symbolic link) and what the grader must answer:
the exact score, the status, and regular expressions for the message the learner sees (the result's
`output` and individual checks' messages). Cases are graded in batches (see conftest.py); the case after
each one (or the sentinel that ends the batch) shows the grader is still up.

"Spy" cells try to escape the sandbox and write what they found to `outputs/spy.json`, which the tests
read from the kept work directory.
"""

from __future__ import annotations

import copy
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from grader import assign
from grader.checks import lab03
from grader.labs import REPO

LAB_ID = lab03.LAB.id
FULL = lab03.CHECKS.max_score  # 15
TOKEN_VAR = "INSTRUCTOR_TOKEN"
HOST_MARKER = "/tmp/mlops-adversarial-pwned"  # a host path no sandbox may create
NOT_RUN = r"^The notebook did not run to the end: "
CELL_ERROR = r"^A cell raised an error \(the cells after it still ran\): "
STARTER_ERROR = CELL_ERROR + r"cell answer-04 raised NotImplementedError: load_csv\(data_path\)"
MISSING = r"outputs/metrics\.json was not found"


@dataclass
class Case:
    name: str
    what: str  # the attack or accident, in words
    data: bytes | None = None  # the file's bytes (None: a symbolic link to `link_to`)
    score: float = 0.0
    status: str = "graded"
    output: str | None = None  # regex the result's output must match (re.search)
    tests: dict[str, str] = field(default_factory=dict)  # check name → regex its message must match
    link_to: str | None = None
    suffix: str = ".ipynb"
    needs_cgroup: bool = False  # its exact outcome needs the job-wide cgroup limits (rlimits differ per machine)


def solution() -> dict:
    return json.loads(lab03.LAB.solution_path.read_text(encoding="utf-8"))


def solved() -> dict:
    """The lab as a learner who answered every exercise like the reference would submit it."""
    return assign.build_lab(solution(), LAB_ID, with_solutions=True)


def starter() -> dict:
    """The untouched lab."""
    return assign.build_lab(solution(), LAB_ID)


def ids(nb: dict) -> list[str | None]:
    return [c.get("metadata", {}).get("mlops", {}).get("id") for c in nb["cells"]]


def with_cell(nb: dict, after: str, source: str, **extra) -> dict:
    """`nb` with a new code cell (no lab id) right after the lab cell `after`."""
    nb = copy.deepcopy(nb)
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": textwrap.dedent(source).strip("\n"), **extra}
    nb["cells"].insert(ids(nb).index(after) + 1, cell)
    return nb


def dump(nb: dict) -> bytes:
    return assign.dumps(nb).encode("utf-8")


# --- spy cells: try, record, never raise ---------------------------------------------------------

SPY_HEADER = '''
import glob, json, os, socket, sys
found = {}
def attempt(name, action):
    try:
        found[name] = {"ok": True, "value": repr(action())[:4000]}
    except BaseException as err:
        found[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:500]}
'''
SPY_FOOTER = '''
os.makedirs(output_dir, exist_ok=True)
with open(os.path.join(output_dir, "spy.json"), "w") as handle:
    json.dump(found, handle, indent=1)
'''


def spy(body: str) -> dict:
    return with_cell(starter(), "locked-02", SPY_HEADER + textwrap.dedent(body) + SPY_FOOTER)


def _read(path: str) -> str:
    return f"lambda: open({path!r}, 'rb').read(200)"


# --- the cases --------------------------------------------------------------------------------


def broken_cases() -> list[Case]:
    """Files that are not lab 03 notebooks: rejected with a reason, before anything runs."""
    good = dump(solved())
    nested = b"[" * 200_000 + b"]" * 200_000
    nb3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "lab"},
           "worksheets": [{"cells": [{"cell_type": "code", "input": "print(1)", "language": "python"}]}]}
    other_lab = solved()
    other_lab["metadata"]["mlops"]["lab"] = "04_data_pipeline"
    bare = solved()
    del bare["metadata"]["mlops"]
    python_source = ("#!/usr/bin/env python\n# coding: utf-8\n\n" + "".join(  # what nbconvert --to script writes
        f"# In[{n}]:\n\n\n{c['source']}\n\n\n" for n, c in enumerate(solved()["cells"]) if c["cell_type"] == "code"
    )).encode()
    fifty_mb = solved()
    fifty_mb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x" * (50 * 2**20)}]
    rejected = dict(status="rejected", score=0.0)
    return [
        Case("invalid_json", "truncated JSON", good[: len(good) // 2], output=r"^Not graded: the file is not "
             r"valid notebook JSON: .* at line \d+, column \d+", **rejected),
        Case("nbformat3", "an nbformat 3 notebook", json.dumps(nb3).encode(),
             output=r"^Not graded: nbformat 3 notebooks are not supported: open it in JupyterLab and save it",
             **rejected),
        Case("not_utf8", "Latin-1 bytes inside the JSON", good.replace(b"Lab 03", b"Lab 03 \xe9t\xe9", 1),
             output=r"^Not graded: the file is not UTF-8 text \(bad byte at offset \d+\)", **rejected),
        Case("empty", "an empty file", b"", output=r"^Not graded: the file is empty: save the notebook",
             **rejected),
        Case("python_renamed", "a .py file renamed .ipynb", python_source,
             output=r"^Not graded: the file is not valid notebook JSON \(it looks like Python source renamed "
             r"to \.ipynb\)", **rejected),
        Case("fifty_mb", "a 50 MB notebook", dump(fifty_mb),
             output=r"^Not graded: the notebook is 50\.\d MB, over the 25 MB limit: clear the outputs", **rejected),
        Case("wrong_lab", "another lab's notebook", dump(other_lab),
             output=r"^Not graded: this is the notebook of lab 04_data_pipeline, not of lab 03_classifier: "
             r"submit labs/03_classifier\.ipynb", **rejected),
        Case("no_lab_metadata", "a notebook not made from the lab", dump(bare),
             output=r"^Not graded: this is not lab 03_classifier's notebook \(its metadata says nothing\)",
             **rejected),
        Case("deep_json", "JSON nested 200 000 levels deep", nested,
             output=r"^Not graded: the file is not a notebook: its JSON is nested far too deeply", **rejected),
        Case("json_list", "JSON that is not a notebook", b"[1, 2, 3]",
             output=r"^Not graded: the file is JSON but not a notebook", **rejected),
        Case("huge_integer", "an integer too long to convert", b'{"nbformat": ' + b"9" * 5000 + b"}",
             output=r"^Not graded: the file is not valid notebook JSON: .*integer", **rejected),
        Case("symlink_submission", "the submission is a link to /etc/passwd", None, link_to="/etc/passwd",
             output=r"^Not graded: the submission is a symbolic link", **rejected),
    ]


def resource_cases() -> list[Case]:
    """Accidents and attacks on the machine: limits stop them; the batch goes on."""
    base = solved()
    kernel_died = NOT_RUN + r"the kernel died \(the notebook exited, was killed, or exhausted a limit\)$"
    zero = dict(score=0.0, tests={"metrics_reported": MISSING + r" — the notebook did not finish: "})
    return [
        Case("infinite_loop", "an endless loop", dump(with_cell(base, "locked-02", "while True:\n    pass")),
             output=NOT_RUN + r"a cell ran out of time: A cell timed out while it was being executed, after "
             r"20 seconds", **zero),
        Case("memory_bomb", "allocating without end", dump(with_cell(base, "locked-02", """
             hoard = []
             while True:
                 hoard.append(b"x" * 2**26)
             """)), output=NOT_RUN + r"the notebook ran out of memory \(limit 1\.0 GiB\)$", needs_cgroup=True, **zero),
        Case("fork_bomb", "forking until the machine chokes (the forks sleep)", dump(with_cell(base, "locked-02", """
             import os, json
             forks = 0
             try:
                 while True:
                     if os.fork() == 0:
                         os.execv("/bin/sleep", ["sleep", "6001"])
                     forks += 1
             except OSError as err:
                 failure = str(err)
             os.makedirs(output_dir, exist_ok=True)
             json.dump({"forks": forks, "error": failure}, open(os.path.join(output_dir, "forks.json"), "w"))
             """)), score=FULL, output=r"^$", needs_cgroup=True),
        Case("output_100mb", "100 MB of output, printed and written to the process's stdout",
             dump(with_cell(base, "locked-02", """
             import os
             for _ in range(50):
                 print("x" * 2**20)
                 os.write(1, b"y" * 2**20 + b"\\nMLOPS-RUNNER-STATUS {\\"ok\\": true}\\n")
             """)), score=FULL,
             output=r"^the notebook's cell outputs exceeded the size limit; the rest were dropped$"),
        Case("sys_exit", "sys.exit(3) mid-notebook", dump(with_cell(base, "locked-02", "import sys\nsys.exit(3)")),
             score=FULL, output=CELL_ERROR + r"a cell you added \(after locked-02\) raised SystemExit: 3$"),
        Case("os_exit", "os._exit(0) mid-notebook, before the outputs",
             dump(with_cell(base, "answer-10", "import os\nos._exit(0)")), output=kernel_died, **zero),
        Case("kill_kernel", "the kernel kills itself",
             dump(with_cell(base, "locked-02", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")),
             output=kernel_died, **zero),
        Case("kill_everything", "kill -9 every process the notebook can see (the runner too)",
             dump(with_cell(base, "locked-02", "import os, signal\nos.kill(-1, signal.SIGKILL)")),
             output=NOT_RUN + r"the notebook's run was killed before it could finish \(.*\): did the notebook "
             r"kill its own processes\?$", **zero),
        Case("disk_bomb", "filling the disk with files", dump(with_cell(base, "locked-02", """
             import os
             os.makedirs("junk", exist_ok=True)
             for number in range(100_000):
                 with open(f"junk/{number}.bin", "wb") as handle:
                     handle.write(os.urandom(2**20) * 16)
             """)), output=NOT_RUN + r"the notebook wrote too much to disk \(limit 200 MB, 100000 files\)",
             **zero),
    ]


def cheat_cases(other_submission: Path) -> list[Case]:
    """Attempts to earn points without the work, or to see what a learner must not see."""
    base = solved()
    deleted_edited = copy.deepcopy(base)
    deleted_edited["cells"] = [c for c in deleted_edited["cells"] if c["id"] not in ("locked-05", "locked-08")]
    for cell in deleted_edited["cells"]:
        if cell["id"] == "locked-02":
            cell["source"] += "\nraise RuntimeError('edited setup')"
        if cell["id"] == "locked-14":
            cell["source"] = "print('metrics look perfect')"
    duplicated = copy.deepcopy(base)
    stub = next(c for c in starter()["cells"] if c["id"] == "answer-13")
    position = ids(duplicated).index("answer-13")
    duplicated["cells"].insert(position, copy.deepcopy(stub))  # the stub first, the real answer second
    duplicated["cells"].insert(0, copy.deepcopy(duplicated["cells"][ids(duplicated).index("locked-05")]))
    for cell in duplicated["cells"]:
        cell["id"] = "same-id"
    no_answer = copy.deepcopy(base)
    no_answer["cells"] = [c for c in no_answer["cells"] if c["id"] != "answer-13"]
    fake_files = with_cell(starter(), "locked-02", """
        import json, os
        os.makedirs(output_dir, exist_ok=True)
        json.dump({"roc_auc": 0.999, "accuracy": 0.99, "cv_roc_auc_mean": 0.998, "cv_roc_auc_std": 0.001},
                  open(os.path.join(output_dir, "metrics.json"), "w"))
        with open(os.path.join(output_dir, "test_predictions.csv"), "w") as handle:
            handle.write("row,proba\\n" + "".join(f"{i},0.9\\n" for i in range(114)))
        open(os.path.join(output_dir, "model.skops"), "wb").write(os.urandom(4096))
        results = {"score": 12, "max_score": 12, "tests": [{"name": "holdout_auc", "score": 3}]}
        for where in ("results.json", os.path.expanduser("~/results.json"), "/autograder/results/results.json"):
            try:
                json.dump(results, open(where, "w"))
            except OSError:
                pass
        """)
    cheats = [
        Case("patch_sklearn_metrics", "sklearn's roc_auc_score and accuracy_score monkeypatched to return 1.0",
             dump(with_cell(base, "locked-11", """
             import sklearn.metrics
             sklearn.metrics.roc_auc_score = sklearn.metrics.accuracy_score = lambda *args, **kwargs: 1.0
             """)), score=FULL - 1, output=r"^$",
             tests={"metrics_agree": r"^you reported accuracy = 1\.000000, but recomputing it from your saved model "
                    r"gives 0\.\d{6} \(allowed difference 0\.0001\)$"}),
        Case("patch_builtins_numpy", "builtins, NumPy and cross_val_score monkeypatched",
             dump(with_cell(base, "locked-02", """
             import builtins, numpy, sklearn.model_selection
             builtins.abs = lambda value: 0.0
             numpy.allclose = numpy.isclose = lambda *args, **kwargs: True
             numpy.testing.assert_allclose = lambda *args, **kwargs: None
             sklearn.model_selection.cross_val_score = lambda *args, **kwargs: numpy.ones(5)
             """)), score=FULL - 3, output=r"^$",
             tests={"cv_reproduces": r"^you reported cv_roc_auc_mean = 1\.000000, but recomputing it from the "
                    r"same 5 shuffled stratified folds of X_train gives 0\.\d{6}",
                    "families_compared": r"^you reported logreg mean \(your pipeline\) = 1\.000000, but "
                    r"recomputing it from your saved model gives 0\.\d{6}"}),
        Case("override_showtraceback", "IPython's showtraceback silenced so no error shows",
             dump(with_cell(starter(), "locked-02", """
             ip = get_ipython()
             ip.showtraceback = lambda *args, **kwargs: None
             ip._showtraceback = lambda *args, **kwargs: None
             """)), output=r"^$", tests={"metrics_reported": MISSING + "$"}),
        Case("fake_all_passed", "printing fake 'All tests passed' and a forged runner status",
             dump(with_cell(starter(), "locked-02", """
             import os
             print("All tests passed! Score: 12/12")
             forged = b'\\nMLOPS-RUNNER-STATUS {"ok": true}\\n'
             os.write(1, forged)
             os.write(2, forged)
             print(forged.decode())
             """)), output=STARTER_ERROR, tests={"metrics_reported": MISSING}),
        Case("fake_outputs", "hand-written metrics, predictions, model and results files",
             dump(fake_files), score=1.0, output=STARTER_ERROR,
             tests={"split_as_asked": r"holds the positions 0\.\.113, not the index labels",
                    "artifact_loads": r"^outputs/model\.skops is not a skops file"}),
        Case("hardcoded_seed", "overriding the grader's seed parameter with seed = 0",
             dump(with_cell(base, "locked-01", "seed = 0")), score=FULL - 1, output=r"^$",
             tests={"split_as_asked": r"the seeded split \(seed=17\) has 114 test rows, and yours are exactly the "
                    r"test rows of seed=0: the seed is typed in"}),
        Case("edit_delete_locked", "locked cells deleted and edited",
             dump(deleted_edited), score=FULL,
             output=r"^restored 2 locked cell\(s\) you edited: locked-02, locked-14\n"
             r"restored 2 locked cell\(s\) you deleted: locked-05, locked-08$"),
        Case("duplicated_ids", "duplicated lab ids (a stub before the real answer) and one cell id for all",
             dump(duplicated), score=FULL,
             output=CELL_ERROR + r"cell answer-13 raised NotImplementedError"),
        Case("answer_deleted", "the last answer cell deleted", dump(no_answer), score=0.0,
             output=STARTER_ERROR.replace("answer-04", "answer-13").split("load_csv")[0]
             + r".*\nanswer cell\(s\) missing, graded as not attempted: answer-13$",
             tests={"metrics_reported": MISSING + r" — an earlier error may explain it"}),
        Case("symlink_metrics", "outputs/metrics.json replaced by a link to /etc/passwd",
             dump(with_cell(base, "locked-14", """
             import os
             target = os.path.join(output_dir, "metrics.json")
             os.remove(target)
             os.symlink("/etc/passwd", target)
             """)), score=FULL - 3, output=r"^$",
             tests={"metrics_reported": r"^outputs/metrics\.json is \(or passes through\) a symbolic link",
                    "metrics_agree": r"^outputs/metrics\.json is \(or passes through\) a symbolic link"}),
        Case("fifo_metrics", "outputs/metrics.json replaced by a FIFO (reading it would block forever)",
             dump(with_cell(base, "locked-14", """
             import os
             target = os.path.join(output_dir, "metrics.json")
             os.remove(target)
             os.mkfifo(target)
             """)), score=FULL - 3, output=r"^$",
             tests={"metrics_reported": r"^outputs/metrics\.json is not a regular file$"}),
        Case("symlink_grader", "outputs linked to the grader's files and the hidden checks",
             dump(with_cell(base, "locked-14", f"""
             import os
             for name, target in (("model.skops", {str(REPO / 'grader/checks/lab03.py')!r}),
                                  ("test_predictions.csv", {str(REPO / 'solutions/03_classifier.ipynb')!r})):
                 os.remove(os.path.join(output_dir, name))
                 os.symlink(target, os.path.join(output_dir, name))
             os.symlink("/", os.path.join(output_dir, "root"))
             """)), score=1.0, output=r"^$",
             tests={"artifact_loads": r"^outputs/model\.skops is \(or passes through\) a symbolic link",
                    "split_as_asked": r"^outputs/test_predictions\.csv is \(or passes through\) a symbolic link"}),
        Case("html_injection", "script, rich markup, escape codes and a lone surrogate in messages",
             dump(with_cell(starter(), "locked-02", r"""
             import json, os
             os.makedirs(output_dir, exist_ok=True)
             json.dump({"<img src=x onerror=alert(1)>": 1, "[/bold][link=http://evil]x": 2, "\x1b[2J": 3,
                        "\ud800": 4}, open(os.path.join(output_dir, "metrics.json"), "w"))
             raise ValueError("<script>alert('xss')</script> [/red] \x1b[31m")
             """)), output=CELL_ERROR + r"a cell you added \(after locked-02\) raised ValueError: "
             r"<script>alert\('xss'\)</script> \[/red\] \\u001b\[31m$",
             tests={"metrics_reported": r"lacks the key\(s\) roc_auc.*found: <img src=x onerror=alert\(1\)>, "
                    r"\[/bold\]\[link=http://evil\]x, \\u001b\[2J, \\ud800$"}),
    ]
    escapes = [
        Case("read_hidden_checks", "reading the hidden checks and the grader", dump(spy(f"""
             for number, path in enumerate([{str(REPO / 'grader/checks/lab03.py')!r}, "../../grader/checks/lab03.py",
                                            "/proc/1/root" + {str(REPO / 'grader/checks/lab03.py')!r},
                                            {str(REPO / 'solutions/03_classifier.ipynb')!r}]):
                 attempt(f"open{{number}}", lambda: open(path, "rb").read(200))
             attempt("import_checks", lambda: __import__("grader.checks.lab03"))
             attempt("search", lambda: [os.path.join(folder, name)
                                        for top in ("/work", "/sandbox", "/home", "/tmp", "/root", "/etc", "/usr/local")
                                        for folder, _, names in os.walk(top) for name in names
                                        if name in ("lab03.py", "03_classifier.ipynb", "sklearn_model.py")])
             attempt("repo_listing", lambda: os.listdir({str(REPO)!r}))
             """)), output=STARTER_ERROR),
        Case("read_other_submission", "reading another submission of the batch and other jobs' files",
             dump(spy(f"""
             attempt("other", lambda: open({str(other_submission)!r}, "rb").read(200))
             attempt("other_dir", lambda: os.listdir({str(other_submission.parent)!r}))
             attempt("host_tmp_jobs", lambda: glob.glob("/tmp/mlops-grade-*"))
             attempt("sandbox_mounts", lambda: sorted(os.listdir("/sandbox")))
             attempt("work", lambda: sorted(os.listdir(".")))
             attempt("processes", lambda: sorted(open(f"/proc/{{p}}/cmdline", "rb").read()[:100]
                                                 for p in os.listdir("/proc") if p.isdigit()))
             """)), output=STARTER_ERROR),
        Case("write_outside", "writing into the venv, the repository, the library and the host /tmp",
             dump(spy(f"""
             import sysconfig, mlops_kit
             targets = {{"venv": os.path.join(sysconfig.get_paths()["purelib"], "zz_pwned.pth"),
                         "venv_bin": os.path.join(sys.prefix, "bin", "pwned"),
                         "repo": {str(REPO / 'pwned.txt')!r},
                         "library": os.path.join(list(mlops_kit.__path__)[0], "pwned.py"),
                         "host_tmp": {HOST_MARKER!r},
                         "usr": "/usr/lib/pwned",
                         "etc_passwd": "/etc/passwd"}}
             for name, path in targets.items():
                 attempt(name, lambda: open(path, "a").write("import os; os.system('id')\\n"))
             attempt("chmod_tools", lambda: os.chmod("/sandbox/tools/run_notebook.py", 0o777))
             """)), output=STARTER_ERROR),
        Case("network", "opening network connections", dump(spy("""
             attempt("tcp_ip", lambda: socket.create_connection(("1.1.1.1", 443), timeout=3))
             attempt("dns", lambda: socket.getaddrinfo("pypi.org", 443))
             attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53)))
             attempt("interfaces", lambda: sorted(n for _, n in socket.if_nameindex()))
             attempt("urllib", lambda: __import__("urllib.request").request.urlopen("https://pypi.org", timeout=3))
             """)), output=STARTER_ERROR),
        Case("read_environment", f"reading the grader's environment ({TOKEN_VAR})", dump(spy("""
             attempt("environ", lambda: dict(os.environ))
             def environments():
                 seen = {}
                 for pid in filter(str.isdigit, os.listdir("/proc")):
                     try:
                         seen[pid] = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
                     except OSError as err:
                         seen[pid] = type(err).__name__
                 return seen
             attempt("proc_environ", environments)
             attempt("own_environ", lambda: open("/proc/self/environ", "rb").read())
             attempt("parent_environ", lambda: open(f"/proc/{os.getppid()}/environ", "rb").read())
             """)), output=STARTER_ERROR),
    ]
    return cheats + escapes
