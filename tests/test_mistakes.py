"""Each lesson's "Common mistakes" section is written from its lab's wrong-answer cases and kept up to date."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import mistakes  # noqa: E402

from grader.cases import cases_of  # noqa: E402
from grader.labs import lab_modules  # noqa: E402


@pytest.mark.parametrize("pattern,text", [
    (r"fitted on all \d+ rows \(train \+ test\)", "“fitted on all N rows (train + test)”"),
    (r"requests failed|p95 latency .*x the reference", "“requests failed” or “p95 latency … x the reference”"),
    (r"never became ready.*(CUDA|cuda|torch\.cuda)", "“never became ready … CUDA/cuda/torch.cuda”"),
    (r"lacks the output\(s\) data/test\.csv", "“lacks the output(s) data/test.csv”"),
    (r"bucket edges .* expected", "“bucket edges … expected”"),
])
def test_a_pattern_reads_as_the_words_it_matches(pattern, text):
    assert mistakes.readable(pattern) == text


def test_every_lesson_lists_its_labs_mistakes_as_the_cases_say():
    stale = mistakes.sync(check=True)
    assert not stale, f"run `make lessons`: the common mistakes of {stale} are missing or stale"
    module = lab_modules()["03_classifier"]
    lesson = json.loads((mistakes.REPO / module.LAB.lesson).read_text(encoding="utf-8"))
    text = next("".join(c["source"]) for c in lesson["cells"] if "".join(c["source"]).startswith(mistakes.HEADING))
    assert text.count("<details>") == len(cases_of(module))  # one folded entry per case
    assert "“exactly the test rows of seed=42”" in text  # a case's `says`, as words
    assert "**Fix:** Pass the `seed` variable" in text  # its fix


def test_a_new_case_makes_the_section_stale(monkeypatch):
    module = lab_modules()["03_classifier"]
    lesson = json.loads((mistakes.REPO / module.LAB.lesson).read_text(encoding="utf-8"))
    from grader.cases import Case, replace

    extra = Case("extra", "a mistake nobody has made yet", (replace("answer-04", "seed=seed)", "seed=7)"),),
                 expect={"split_as_asked": "failed"}, fix="Do it right.")
    monkeypatch.setattr(sys.modules["grader.checks.lab03_cases"], "CASES",
                        [*sys.modules["grader.checks.lab03_cases"].CASES, extra])
    assert mistakes.place(lesson, mistakes.section(module)), "the section did not change with a new case"
    assert "A mistake nobody has made yet" in mistakes.section(module)
