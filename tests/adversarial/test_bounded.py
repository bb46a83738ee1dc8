"""Learner-written structured data is parsed within limits, messages are capped, and control, bidi and
format characters never reach a report raw (issue 9, items 1 and 9).

Unit tests of grader/bounded.py and clean_text, then two graded submissions: lab 04's reference with a
"billion laughs" dvc.yaml, and a submission named with a bidi override whose messages carry control and
format characters.
"""

from __future__ import annotations

import io
import json
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from grader import bounded, collect
from grader.execute import clean_text

# the raw characters no output may hold: C0/C1 controls (ESC), bidi overrides and isolates, zero-width,
# line and paragraph separators, BOM
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """A list whose elements are ever larger lists, each level `width` aliases of the one before."""
    anchors = ["&l0 [" + ", ".join(['"lol"'] * width) + "]"]
    anchors += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


def _within(seconds: float, megabytes: float):
    """A context that asserts the block ran within `seconds` and allocated at most `megabytes` at its peak."""
    class Within:
        def __enter__(self):
            tracemalloc.start()
            self.start = time.monotonic()

        def __exit__(self, *exc):
            elapsed, (_, peak) = time.monotonic() - self.start, tracemalloc.get_traced_memory()
            tracemalloc.stop()
            if exc[0] is None or issubclass(exc[0], bounded.BoundedError):
                assert elapsed < seconds, f"took {elapsed:.2f} s"
                assert peak < megabytes * 2**20, f"peaked at {peak / 2**20:.1f} MB"
            return False

    return Within()


# --- YAML ----------------------------------------------------------------------------------------------


def test_a_billion_laughs_yaml_is_refused_quickly_in_little_memory():
    text = "stages:\n  validate:\n    cmd: " + billion_laughs() + "\n"
    assert len(text) < 600
    with _within(5.0, 5), pytest.raises(bounded.BoundedError,
                                        match=r"^dvc\.yaml uses YAML aliases that expand to more than 20000 nodes"):
        bounded.load_yaml(text, name="dvc.yaml")


@pytest.mark.parametrize("text,depth,pattern", [
    ("a: &a [1, *a]\n", 64, r"alias inside its own anchor"),
    ("[" * 200 + "]" * 200, 64, r"nested deeper than 64 levels"),
    ("a: &a [[[[[[[[1]]]]]]]]\nb: [[[[[[[[[[*a]]]]]]]]]]\n", 12, r"aliases that nest deeper than 12 levels"),
    ("s: &s " + "x" * 1000 + "\nt: [" + ", ".join(["*s"] * 300) + "]\n", 64, r"expand to more than 200000 characters"),
    ("k: [" + ", ".join(["*a"] * 3) + "]\n", 64, r"not valid YAML: found undefined alias"),
    ("a: [1, 2\n", 64, r"^f\.yaml is not valid YAML"),
    ("x: " + "y" * 300_000 + "\n", 64, r"over 200000 bytes"),
])
def test_yaml_over_a_limit_or_invalid_is_refused_with_a_reason(text, depth, pattern):
    with _within(20.0, 20), pytest.raises(bounded.BoundedError, match=pattern):  # tracemalloc: ~10× slower
        bounded.load_yaml(text, name="f.yaml", max_bytes=200_000, max_depth=depth)


def test_alias_uses_are_counted():
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 30) + "]\n"
    with pytest.raises(bounded.BoundedError, match="aliases more than 20 times"):
        bounded.load_yaml(text, max_aliases=20)
    assert bounded.load_yaml(text)["b"] == [1] * 30


def test_an_ordinary_dvc_yaml_and_modest_anchors_are_read_as_safe_load_reads_them():
    import yaml

    run = "python -m mlops_kit.pipeline"
    stages = {"validate": {"cmd": f"{run} validate data/raw.csv data/validated.csv", "deps": ["data/raw.csv"],
                           "outs": ["data/validated.csv"]},
              "evaluate": {"cmd": f"{run} evaluate models/model.skops data/test.csv metrics.json",
                           "deps": ["models/model.skops", "data/test.csv"], "params": ["evaluate"],
                           "metrics": [{"metrics.json": {"cache": False}}]}}
    text = yaml.safe_dump({"stages": stages}, sort_keys=False)
    assert bounded.load_yaml(text, name="dvc.yaml") == yaml.safe_load(text) == {"stages": stages}
    anchored = "base: &base {deps: [a.csv], outs: [b.csv]}\nstages:\n  one: {<<: *base, cmd: run one}\n" \
               "  two: {<<: *base, cmd: run two}\n"
    assert bounded.load_yaml(anchored) == yaml.safe_load(anchored)
    assert bounded.load_yaml("") is None and bounded.load_yaml("seed: 7\n") == {"seed": 7}


# --- JSON and TOML -------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [150, 100_000])
def test_deep_json_is_refused(tmp_path, depth):
    text = "[" * depth + "]" * depth
    with _within(2.0, 50), pytest.raises(bounded.BoundedError, match="nested deeper than 100 levels"):
        bounded.load_json(text, name="m.json")
    (tmp_path / "m.json").write_text('{"a": ' + text + "}")
    with pytest.raises(collect.CollectError, match=r"^m\.json is nested deeper than 100 levels"):
        collect.read_json(tmp_path, "m.json")


def test_json_within_limits_reads_as_before(tmp_path):
    assert bounded.load_json('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    assert bounded.load_json("[" * 99 + "]" * 99) is not None
    with pytest.raises(bounded.BoundedError, match="not valid JSON"):
        bounded.load_json('{"a": ')
    with pytest.raises(bounded.BoundedError, match="over 10 bytes"):
        bounded.load_json("[1, 2, 3, 4, 5]", max_bytes=10)


def test_toml_is_read_within_a_size_and_a_depth():
    assert bounded.load_toml('[project]\nname = "bcdata"\n') == {"project": {"name": "bcdata"}}
    with pytest.raises(bounded.BoundedError, match=r"^pyproject\.toml is over 100 bytes"):
        bounded.load_toml("a = '" + "x" * 200 + "'\n", name="pyproject.toml", max_bytes=100)
    with _within(2.0, 50), pytest.raises(bounded.BoundedError, match="nested deeper than 64 levels"):
        bounded.load_toml("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(bounded.BoundedError, match="not valid TOML"):
        bounded.load_toml("[project\n")


# --- quoting and cleaning ------------------------------------------------------------------------------


def test_quote_is_bounded_in_length_and_depth_whatever_the_value():
    import yaml

    shared = yaml.safe_load(billion_laughs(levels=12))  # 9**12 strings, shared
    looped: list = [1]
    looped.append(looped)
    for value in (shared, looped, {"k" * 10_000: "v" * 10**7}, list(range(10**6)), "x" * 10**7, b"y" * 10**6):
        with _within(0.5, 5):
            text = bounded.quote(value, limit=120)
        assert len(text) <= 120 and text.endswith(("…", "]", "}")), text
    assert bounded.quote({"a": [1, 2], "b": "c"}) == repr({"a": [1, 2], "b": "c"})
    assert bounded.quote([[[[1]]]], depth=2) == "[[[…]]]"
    assert bounded.quote("\u202e") == repr("\u202e") == "'\\u202e'"


def test_clean_text_shows_controls_bidi_and_format_characters_as_escapes():
    text = "a\x1b[2Jb\ud800c\x9bd\te\nf é ✓ \u202eg\u2066h\u200bi\u2028j\u2029k\ufeff\u061c\u200e\r\U000e0041"
    assert clean_text(text) == ("a\\u001b[2Jb\\ud800c\\u009bd\te\nf é ✓ \\u202eg\\u2066h\\u200bi\\u2028j\\u2029k"
                                "\\ufeff\\u061c\\u200e\\u000d\\U000e0041")
    assert clean_text(clean_text(text)) == clean_text(text)  # idempotent: cleaning twice changes nothing
    assert clean_text("x" * 5000, 100) == "x" * 100 + "… (4900 more characters)"
    assert len(clean_text("\u202e" * 5000, 100)) < 130


def test_judge_caps_and_cleans_every_message():
    from types import SimpleNamespace

    from grader.checks.common import Checks, Fail, Partial
    from grader.judge import MESSAGE_LIMIT, judge

    checks = Checks()

    @checks.add(points=1, hint="", section="")
    def huge(ctx):
        """A check quoting a huge learner value."""
        raise Fail("found " + "x" * 10**7)

    @checks.add(points=1, hint="", section="")
    def sneaky(ctx):
        """A check quoting a learner's run name."""
        return Partial(0.5, "run \u202edessap \u2714\u2028\u2714 all passed\x1b[2J")

    @checks.add(points=1, hint="", section="")
    def crashed(ctx):
        """A check that hits a shape it did not foresee."""
        raise KeyError("\u2066" + "k" * 10**6)

    results = judge(checks, SimpleNamespace())
    assert all(len(r.message) <= MESSAGE_LIMIT + 40 for r in results), [len(r.message) for r in results]
    assert results[0].message.endswith("… (9998006 more characters)")
    assert results[1].message == "run \\u202edessap \u2714\\u2028\u2714 all passed\\u001b[2J"
    assert "\\u2066" in results[2].message and not RAW.search("".join(r.message for r in results))


# --- graded submissions --------------------------------------------------------------------------------


@pytest.fixture
def job_root(tmp_path, monkeypatch) -> Path:
    """Job dirs (tempfile.mkdtemp(prefix="mlops-grade-")) made in a folder of this test's own, so that other
    runs on the machine cannot blur whether this grading left one behind."""
    import tempfile

    root = tmp_path / "jobs"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _left(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def _outputs(result, tmp_path: Path) -> tuple[str, str, str, float, float]:
    """results.json, the HTML page and the terminal table of one result, and how long each report took."""
    from rich.console import Console

    from grader.grade import write_results
    from grader.report import print_results, write_html_report

    start = time.monotonic()
    write_results([result], tmp_path / "results.json", reveal_hidden=True)
    page = write_html_report([result], tmp_path / "report.html", reveal_hidden=True).read_text(encoding="utf-8")
    html_seconds = time.monotonic() - start
    start = time.monotonic()
    buffer = io.StringIO()
    print_results([result], console=Console(file=buffer, width=160, color_system=None), reveal_hidden=True)
    terminal_seconds = time.monotonic() - start
    return ((tmp_path / "results.json").read_text(encoding="utf-8"), page, buffer.getvalue(), html_seconds,
            terminal_seconds)


def _solved(module) -> dict:
    from grader import assign

    solution = json.loads(module.LAB.solution_path.read_text(encoding="utf-8"))
    return assign.build_lab(solution, module.LAB.id, with_solutions=True)


DVC_YAML = '(project / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))'


@pytest.mark.slow
def test_a_billion_laughs_dvc_yaml_is_refused_and_every_output_stays_small(tmp_path, isolate, job_root):
    from grader import assign
    from grader.cases import Case, replace
    from grader.checks import lab04
    from grader.grade import grade_notebook
    from grader.judge import MESSAGE_LIMIT

    # the reference, with stage validate's cmd a mapping whose 300-byte value expands to 66,429 strings: DVC
    # refuses the file quickly (cmd must be a string or a list), the grader used to quote it whole (a 0.5 MB
    # message; three more levels made it 350 MB). More levels would slow DVC itself, in the sandbox.
    bomb = replace("answer-13", DVC_YAML, f"bomb = {billion_laughs(levels=5)!r}\n" + (
        'rest = yaml.safe_dump({"stages": {k: v for k, v in stages.items() if k != "validate"}}, sort_keys=False)\n'
        '(project / "dvc.yaml").write_text("stages:\\n  validate:\\n    cmd: {run: " + bomb + "}\\n"'
        ' + "    deps: [data/raw.csv]\\n    outs: [data/validated.csv]\\n" + rest.split("\\n", 1)[1])'))
    case = Case("billion_laughs", "dvc.yaml with nested aliases", edits=(bomb,), expect={"stages_declared": "failed"})
    path = tmp_path / "billion_laughs.ipynb"
    path.write_text(assign.dumps(case.notebook(_solved(lab04))), encoding="utf-8")
    result = grade_notebook(lab04, path, isolate=isolate)
    assert not _left(job_root), f"job dirs left behind: {_left(job_root)}"
    by_name = {t.name: t for t in result.tests}
    summary = {t.name: (t.status, t.score, t.message[:300]) for t in result.tests}
    assert result.status == "graded", (result.output, summary)
    refused = r"^\S*project/dvc\.yaml uses YAML aliases that expand to more than 20000 nodes: write the entries out$"
    for name in ("stages_declared", "stage_validate", "stage_featurize", "stage_train", "stage_evaluate"):
        assert by_name[name].status == "failed" and re.match(refused, by_name[name].message), summary
    # DVC refuses the file too, so nothing ran: no dvc.lock, no commit, no clean rerun; the data, the remote
    # and params.yaml were done before dvc.yaml and keep their points
    passed = {"data_versioned", "remote_configured", "pull_restores", "params_written"}
    skipped = {"repro_identical", "param_change_reruns_downstream"}
    assert {t.name: t.status for t in result.tests} == {
        t.name: "passed" if t.name in passed else "skipped" if t.name in skipped else "failed" for t in result.tests
    }, summary
    assert result.score == pytest.approx(6.0), (result.score, summary)
    assert all(len(t.message) <= MESSAGE_LIMIT + 40 for t in result.tests), summary
    results_json, page, terminal, html_seconds, terminal_seconds = _outputs(result, tmp_path)
    assert len(results_json.encode()) < 200_000 and len(page.encode()) < 200_000 and len(terminal) < 200_000
    assert html_seconds < 5 and terminal_seconds < 5, (html_seconds, terminal_seconds)


@pytest.mark.slow
def test_bidi_and_control_characters_never_reach_a_report_raw(tmp_path, isolate, job_root):
    import adversarial_cases as cases

    from grader.checks import lab03
    from grader.grade import grade_notebook

    # a file named with a right-to-left override (shown as "attack.bnypi✔ passing"), and a notebook that
    # writes its metrics with keys full of control and format characters, then raises with more of them
    name = "attack\u202egnissap \u2714.ipynb"
    sneaky = {"\u202eok\u2066": 1, "zero\u200bwidth": 2, "line\u2028break": 3, "para\u2029graph": 4, "\x1b[2J": 5}
    path = tmp_path / name
    path.write_bytes(cases.dump(cases.with_cell(cases.starter(), "locked-02", f"""
        import json, os
        os.makedirs(output_dir, exist_ok=True)
        json.dump({sneaky!r}, open(os.path.join(output_dir, "metrics.json"), "w"))
        raise ValueError("\\u202e\\u2066 \\u2714 passed\\u2028\\x1b[31m")
        """)))
    result = grade_notebook(lab03, path, isolate=isolate)
    assert not _left(job_root), f"job dirs left behind: {_left(job_root)}"
    assert result.status == "graded" and result.score == 0, result.output
    results_json, page, terminal, _, _ = _outputs(result, tmp_path)
    for text in (results_json, page, terminal):
        assert not RAW.search(text), repr(RAW.search(text))
        assert "\\u202e" in text and "\\u2066" in text and "\\u2028" in text  # shown, visibly
    payload = json.loads(results_json)[0]
    assert payload["submission"].endswith("attack\\u202egnissap \u2714.ipynb")
    assert "ValueError: \\u202e\\u2066 \u2714 passed\\u2028\\u001b[31m" in payload["output"]
    messages = " ".join(t["output"] for t in payload["tests"])
    for shown in ("\\u202eok\\u2066", "zero\\u200bwidth", "line\\u2028break", "para\\u2029graph", "\\u001b[2J"):
        assert shown in messages, messages[:2000]
    assert "\\u001b[2J" in page and "\\u001b[2J" in terminal
