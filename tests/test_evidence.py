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
