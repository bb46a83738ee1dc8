"""Wrong-answer cases of lab 09: mistakes learners make when they write CI/CD for a model."""

from grader.cases import Case, replace

WORKFLOW, BUMP, TEMPLATE, GATE, SLO, RUNBOOK = "answer-04", "answer-07", "answer-10", "answer-11", "answer-14", \
    "answer-15"
AFTER_VALID = ("stages_ordered", "triggers", "least_privilege", "no_script_injection", "dependency_cache",
               "ci_jobs_pass", "smoke_trains_sample", "ci_catches_bugs", "image_build_step", "gitops_bump",
               "gate_in_workflow")
SMOKE = "python -m cancer_model.train --data data/sample.csv --out build/smoke --min-auc 0.9"
GATE_STEP = ('''          printf '%s\\n' "$PR_BODY" > "$RUNNER_TEMP/body.md"\n''')
TOUCHED = ('    touched = any(path == p.rstrip("/") or path.startswith(p) for path in changed for p in MODEL_PATHS)\n'
           "    return bool(ticked) or touched")
DEPLOY_IF = "    if: github.event_name == 'push' && github.ref == 'refs/heads/main'\n"

CASES = [
    Case("green_no_matter_what", "kept CI green on every run: ruff with --exit-zero, `pytest || true`, and a smoke "
         "training without a floor",
         edits=(replace(WORKFLOW, "      - run: ruff check .", "      - run: ruff check . --exit-zero"),
                replace(WORKFLOW, "      - run: python -m pytest -q tests", "      - run: python -m pytest -q tests || true"),
                replace(WORKFLOW, SMOKE, "python -m cancer_model.train --data data/sample.csv --out build/smoke")),
         expect={"ci_catches_bugs": "failed", "smoke_trains_sample": "failed"},
         says={"ci_catches_bugs": r"lint job passed.*test job passed.*smoke job passed",
               "smoke_trains_sample": r"without a floor"},
         fix="Let each step's exit code fail the job; hold the smoke model to --min-auc 0.9."),
    Case("parallel_and_unscoped", "left out needs: (every job starts at once), the top-level permissions and the "
         "cache's dependency path",
         edits=(replace(WORKFLOW, "    needs: lint\n", ""), replace(WORKFLOW, "    needs: smoke\n", ""),
                replace(WORKFLOW, "permissions:\n  contents: read  # every job reads the code; a job that must "
                        "write says so itself\n\n", ""),
                replace(WORKFLOW, "      - uses: actions/setup-python@v5\n        with:\n          python-version: "
                        "\"3.11\"\n          cache: pip\n          cache-dependency-path: requirements-ci.txt\n"
                        "      - run: python -m pip install -r requirements-ci.txt\n      - run: ruff check .",
                        "      - uses: actions/setup-python@v5\n        with:\n          python-version: \"3.11\"\n"
                        "          cache: pip\n      - run: python -m pip install -r requirements-ci.txt\n"
                        "      - run: ruff check .")),
         expect={"stages_ordered": "failed", "least_privilege": "failed", "dependency_cache": "failed"},
         says={"stages_ordered": r"test does not wait for lint; build does not wait for smoke",
               "least_privilege": r"no top-level permissions",
               "dependency_cache": r"lint: setup-python's pip cache is keyed on \*\*/requirements\.txt"},
         fix="needs: lint → test → smoke → build → deploy; permissions: contents: read at the top; "
             "cache-dependency-path: requirements-ci.txt."),
    Case("pasted_pr_body", "pasted the PR's description straight into the gate's script and took actions from "
         "their main branch",
         edits=(replace(WORKFLOW, GATE_STEP,
                        "          cat > \"$RUNNER_TEMP/body.md\" <<'EOF'\n"
                        "          ${{ github.event.pull_request.body }}\n          EOF\n"),
                replace(WORKFLOW, "    steps:\n      - uses: actions/checkout@v4\n      - name: Bump",
                        "    steps:\n      - uses: actions/checkout@main\n      - name: Bump")),
         expect={"no_script_injection": "failed", "least_privilege": "failed"},
         says={"no_script_injection": r"gate step 3.*github\.event\.pull_request\.body",
               "least_privilege": r"not pinned.*deploy: actions/checkout@main"},
         fix="env: PR_BODY: ${{ github.event.pull_request.body }} and \"$PR_BODY\"; pin actions to @v4."),
    Case("deploys_every_pr", "deployed from every run, pull requests included, and tagged the image latest",
         edits=(replace(WORKFLOW, DEPLOY_IF, ""),
                replace(WORKFLOW, 'run: docker build -f Containerfile -t "$IMAGE:$GITHUB_SHA" .',
                        'run: docker build -f Containerfile -t "$IMAGE:latest" .'),
                replace(WORKFLOW, "      - name: Push\n        if: github.event_name == 'push'\n"
                        "        run: docker push \"$IMAGE:$GITHUB_SHA\"",
                        "      - name: Push\n        run: docker push \"$IMAGE:latest\"")),
         expect={"triggers": "failed", "image_build_step": "failed"},
         says={"triggers": r"deploy has no if:", "image_build_step": r"does not tag the image with the commit.*"
               r":latest.*pushes on pull requests"},
         fix="if: github.event_name == 'push' && github.ref == 'refs/heads/main'; tag $IMAGE:$GITHUB_SHA."),
    Case("sed_every_overlay", "bumped the tag with sed in every overlay and committed everything, as the bot's "
         "default identity",
         edits=(replace(WORKFLOW, '''          git config user.name "github-actions[bot]"
          git config user.email "41898282+github-actions[bot]@users.noreply.github.com"
          python scripts/bump_image.py deploy/overlays/prod "$IMAGE" "$GITHUB_SHA"
          git add deploy/overlays/prod/kustomization.yaml
''', '''          git config user.name "deploy"
          git config user.email "deploy@example.org"
          sed -i "s/newTag: .*/newTag: $GITHUB_SHA/" deploy/overlays/*/kustomization.yaml
          git add -A
'''),),
         expect={"gitops_bump": "failed"},
         says={"gitops_bump": r"changes deploy/overlays/dev/kustomization\.yaml, deploy/overlays/prod.*not "
               r"github-actions.*dev rendering changed"},
         fix="Bump only the prod overlay (scripts/bump_image.py), add only that file, commit as github-actions[bot]."),
    Case("gate_reads_only_the_box", "decided 'model change' from the ticked box alone and never read the model card",
         edits=(replace(GATE, TOUCHED, "    return bool(ticked)"),
                replace(GATE, "    return found + card_problems(card)", "    return found")),
         expect={"gate_decisions": "partial"},
         says={"gate_decisions": r"an unticked box but params\.yaml changed.*accepted, should be refused"},
         fix="A change under cancer_model/ or data/, or to params.yaml or dvc.lock, is a model change, ticked or "
             "not; check every card section."),
    Case("gate_any_text", "accepted any text after 'MLflow run id:' as a run id, and wrote a template without the "
         "data version field",
         edits=(replace(GATE, '    if not re.fullmatch(r"[0-9a-f]{32}", field(body, "MLflow run id").lower()):',
                        '    if not field(body, "MLflow run id"):'),
                replace(TEMPLATE, "- DVC data version:\n", "")),
         expect={"gate_examples": "failed", "pr_template": "failed", "gate_in_workflow": "skipped",
                 "gate_decisions": "skipped"},
         says={"gate_examples": r"placeholder run id: accepted, should be refused",
               "pr_template": r"no empty 'DVC data version:' line"},
         fix="A run id is 32 hex characters; a placeholder is no evidence."),
    Case("slo_in_seconds_rollback_by_kubectl", "wrote the latency objective in seconds under threshold_ms, and "
         "rolled back with kubectl rollout undo",
         edits=(replace(SLO, "  threshold_ms: 300  # ... answer within 300 ms", "  threshold_ms: 0.3"),
                replace(RUNBOOK, "git revert --no-edit <deploy commit>   # or: python scripts/bump_image.py "
                        "deploy/overlays/prod ghcr.io/mlops-course/cancer-service <previous tag>\n"
                        "git push origin HEAD:main", "kubectl -n cancer-prod rollout undo deployment/cancer-service")),
         expect={"slo_file": "failed", "runbook": "failed"},
         says={"slo_file": r"latency\.threshold_ms` = 0\.3 is implausible",
               "runbook": r"does not go through git.*does not quote the latency objective \(0\.3 ms\)"},
         fix="threshold_ms: 300; roll back by reverting the deploy commit: the cluster follows git."),
    Case("lint_with_flake8", "linted with flake8, which the project does not install",
         edits=(replace(WORKFLOW, "      - run: ruff check .", "      - run: flake8 ."),),
         expect={"ci_jobs_pass": "partial", "ci_catches_bugs": "partial"},
         says={"ci_jobs_pass": r"lint: step 4 \(Run flake8 \.\) failed, exit 127.*not found",
               "ci_catches_bugs": r"lint job fails on the clean checkout too"},
         fix="Use the linter the project pins in requirements-ci.txt: ruff check ."),
    Case("gate_body_never_arrives", "named the variable PR_BODY in env: but wrote \"$BODY\" in the script, and ran "
         "the gate on pushes too",
         edits=(replace(WORKFLOW, GATE_STEP, GATE_STEP.replace("$PR_BODY", "$BODY")),
                replace(WORKFLOW, "  gate:\n    if: github.event_name == 'pull_request'\n", "  gate:\n")),
         expect={"gate_in_workflow": "failed", "triggers": "failed"},
         says={"gate_in_workflow": r"placeholder the gate job passed", "triggers": r"gate also runs on a push"},
         fix="The name in env: is the name in the script; if: github.event_name == 'pull_request'."),
    Case("misspelt_needs", "wrote `need:` for `needs:`",
         edits=(replace(WORKFLOW, "    needs: test\n", "    need: test\n"),),
         expect={"workflow_valid": "failed", **{name: "skipped" for name in AFTER_VALID}},
         says={"workflow_valid": r"jobs\.smoke.*need"},
         fix="needs: — GitHub refuses a workflow with an unknown key."),
]
