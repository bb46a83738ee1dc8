"""What a result records about how it was graded: the secret's fingerprint (never the secret), the timing."""

import json

from grader import secret
from grader.grade import Result, _fingerprint


def test_a_result_records_the_secrets_fingerprint_and_never_the_secret():
    secret.seed_for("06_registry", "gate")  # the secret exists once a lab has drawn from it
    result = Result(submission="s.ipynb", lab="06_registry", score=1, max_score=1, execution_time=1, output="",
                    secret=_fingerprint(), timing={"seconds": 420, "ran_out": "", "parts": []})
    text = json.dumps(result.to_json())
    raw = secret.location().read_bytes()
    assert result.to_json()["secret_fingerprint"] == secret.fingerprint()
    assert len(secret.fingerprint()) == 12
    assert raw.hex() not in text and raw.hex()[:16] not in text
    assert result.to_json()["timing"]["seconds"] == 420


def test_per_submission_draws_differ_between_submissions_and_repeat_on_a_regrade(tmp_path):
    from grader.checks import lab02

    def draw(digest):
        work = tmp_path / str(len(list(tmp_path.iterdir())))
        work.mkdir()
        with secret.submission(digest):
            return lab02.prepare(work)[1]

    first, again, other = draw("a" * 64), draw("a" * 64), draw("b" * 64)
    assert first["probe_csv"] == again["probe_csv"] and first["split_seed"] == again["split_seed"]
    assert first["probe_csv"] != other["probe_csv"]
    assert secret.seed_for("06_registry", "gate") == secret.seed_for("06_registry", "gate")  # others stay fixed


def test_the_digest_is_of_what_the_submission_runs():
    from grader.grade import _digest

    code = {"cells": [{"cell_type": "code", "source": ["x = 1\n", "y = 2"]}, {"cell_type": "markdown", "source": "hi"}]}
    same = {"cells": [{"cell_type": "code", "source": "x = 1\ny = 2"}, {"cell_type": "markdown", "source": "other"}]}
    changed = {"cells": [{"cell_type": "code", "source": "x = 1\ny = 3"}]}
    assert _digest(code) == _digest(same) != _digest(changed)
