"""Wrong-answer cases of lab 08: mistakes learners make when they containerize a service."""

from grader.cases import Case, add_cell, answer, replace

FILE, IGNORE, SECRETS, SUPPLY = "answer-04", "answer-06", "answer-09", "answer-12"
AFTER_BUILD = ("runs_hardened", "contract_in_container", "runs_as_non_root", "healthcheck_works", "stops_cleanly",
               "image_size", "no_secret_in_image")
AFTER_READY = ("contract_in_container", "runs_as_non_root", "healthcheck_works", "stops_cleanly")
SERVE = 'CMD ["bentoml", "serve", "service:CancerClassifier", "--host", "0.0.0.0", "--port", "3000"]'
HEALTH = ("""    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', """
          """timeout=2)"]""")

SINGLE_STAGE = """
%%writefile {output_dir}/Containerfile
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
COPY wheels/ /tmp/wheels/
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels -r /tmp/requirements.txt
RUN useradd --create-home --uid 1000 app
WORKDIR /app
COPY service.py settings.py /app/
ENV PATH=/opt/venv/bin:$PATH REGISTRY_DIR=/registry BENTOML_HOME=/tmp/bentoml BENTOML_DO_NOT_TRACK=true
USER 1000
EXPOSE 3000
STOPSIGNAL SIGTERM
HEALTHCHECK CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz')"]
CMD ["bentoml", "serve", "service:CancerClassifier", "--host", "0.0.0.0", "--port", "3000"]
"""

CASES = [
    Case("single_stage", "wrote the builder's steps and the service's in one stage: the wheelhouse stays in the "
         "image's layers",
         edits=(answer(FILE, SINGLE_STAGE),),
         expect={"multi_stage": "failed", "image_size": "failed"},
         says={"multi_stage": r"has one stage", "image_size": r"\d\.\d\dx the reference's.*/tmp/wheels/\*\.whl"},
         fix="Install into /opt/venv in a builder stage and COPY --from=builder only the environment."),
    Case("curl_healthcheck", "probed health with curl, which the slim image does not have, and set no STOPSIGNAL "
         "and no EXPOSE",
         edits=(replace(FILE, HEALTH, '    CMD curl -f http://127.0.0.1:3000/readyz || exit 1'),
                replace(FILE, "STOPSIGNAL SIGTERM\n", ""), replace(FILE, "EXPOSE 3000\n", "")),
         expect={"health_and_stop_signal": "failed", "healthcheck_works": "failed"},
         says={"health_and_stop_signal": r"calls curl.*no STOPSIGNAL.*no EXPOSE 3000",
               "healthcheck_works": r"HEALTHCHECK failed on a ready service.*runs curl, which is not in the image"},
         fix="Use a tool the image has (python3's urllib) and declare STOPSIGNAL SIGTERM."),
    Case("runs_as_root", "never switched users, and wrote a relative WORKDIR",
         edits=(replace(FILE, "USER 1000\n", ""), replace(FILE, "WORKDIR /app", "WORKDIR app")),
         expect={"non_root_user": "failed", "runs_as_non_root": "failed", "hadolint_clean": "failed"},
         says={"non_root_user": r"no USER", "runs_as_non_root": r"uid 0", "hadolint_clean": r"DL3000"},
         fix="USER 1000 before CMD; an absolute WORKDIR."),
    Case("copies_everything", "copied the whole folder into the final image, deleted .env there with RUN rm, and "
         "wrote an empty .dockerignore",
         edits=(replace(FILE, "COPY service.py settings.py /app/", "COPY . /app/\nRUN rm -f /app/.env"),
                answer(IGNORE, "%%writefile {output_dir}/.dockerignore\n# nothing to hide\n")),
         expect={"dockerignore": "failed", "no_secret_in_image": "failed", "image_size": "failed"},
         says={"dockerignore": r"\.env is not excluded", "no_secret_in_image": r"inside the image's layers, in /app/\.env"},
         fix="COPY only service.py and settings.py; exclude .env, .git and the registry in .dockerignore."),
    Case("code_before_install", "copied the project before installing, and passed a registry token as a build "
         "argument with its value",
         edits=(replace(FILE, "COPY requirements.txt /tmp/requirements.txt\nCOPY wheels/ /tmp/wheels/\n",
                        "COPY . /tmp/\nARG REGISTRY_TOKEN=ghp_8f3Kq2ZLx7Vb1Nw4Tr6Yc9Hd0Pm5Sj3Ua2Ge\n"),),
         expect={"cache_friendly_order": "failed", "no_secrets_in_instructions": "failed",
                 "secrets_baseline": "failed"},
         says={"cache_friendly_order": r"copies the service's code before the install",
               "no_secrets_in_instructions": r"ARG REGISTRY_TOKEN",
               "secrets_baseline": r"never reviewed.*Containerfile"},
         fix="COPY requirements.txt and wheels/, install, then copy the code; secrets come at run time."),
    Case("latest_base", "left the base image unpinned and started the final stage from a registry image",
         edits=(replace(FILE, "ARG BASE_IMAGE=python:3.11-slim", "ARG BASE_IMAGE=python:latest"),
                replace(FILE, "FROM ${BASE_IMAGE}\nRUN useradd", "FROM python:3.11-slim\nRUN useradd")),
         expect={"base_image_argument": "failed", "image_builds": "failed",
                 **{name: "skipped" for name in AFTER_BUILD}},
         says={"base_image_argument": r"not pinned", "image_builds": r"cannot be pulled"},
         fix="ARG BASE_IMAGE=python:3.11-slim, and FROM ${BASE_IMAGE} in every stage."),
    Case("registry_baked_in", "baked the registry built at home into the image and pointed REGISTRY_DIR at it",
         edits=(add_cell(IGNORE, "from mlops_kit.serving import demo_registry\n\n"
                                 "demo_registry(f\"{output_dir}/registry\", seed=seed)"),
                replace(FILE, "COPY service.py settings.py /app/", "COPY service.py settings.py /app/\n"
                        "COPY registry/ /app/registry/"),
                replace(FILE, "REGISTRY_DIR=/registry", "REGISTRY_DIR=/app/registry"),
                replace(IGNORE, "registry/\n", "")),
         expect={"dockerignore": "failed", "contract_in_container": "failed"},
         says={"contract_in_container": r"names version '2'.*not a copy in the image"},
         fix="Read the registry from /registry, mounted read-only at run time; keep it out of the image."),
    Case("writes_to_read_only_root", "left BentoML's home in the user's home folder, which a read-only root "
         "cannot write",
         edits=(replace(FILE, "    BENTOML_HOME=/tmp/bentoml \\\n", ""),),
         expect={"runs_hardened": "failed", **{name: "skipped" for name in AFTER_READY}},
         says={"runs_hardened": r"read-only root: point BENTOML_HOME"},
         fix="BENTOML_HOME=/tmp/bentoml: with --read-only only /tmp is writable."),
    Case("shell_form_start", "started the service from a shell-form CMD that logs first, and baselined every finding "
         "without reviewing it",
         edits=(replace(FILE, SERVE, 'CMD echo "starting the service" && bentoml serve service:CancerClassifier '
                        "--host 0.0.0.0 --port 3000"),
                answer(SECRETS, 'baseline = scan_secrets(output_dir, exclude_files=r"^wheels/")\n'
                                '(Path(output_dir) / ".secrets.baseline").write_text(json.dumps(baseline))')),
         expect={"stops_cleanly": "failed", "secrets_baseline": "failed"},
         says={"stops_cleanly": r"killed.*shell-form CMD",
               "secrets_baseline": r"\.env's token is in the baseline.*never reviewed"},
         fix='CMD ["bentoml", "serve", ...] in exec form; review each finding, keep .env out of the scan.'),
    Case("supply_chain_shortcuts", "excluded every file from the secrets scan, described the notebook's own "
         "environment in the SBOM, and wrote a clean audit when pip-audit printed nothing",
         edits=(answer(SECRETS, 'baseline = scan_secrets(output_dir, exclude_files=".*")\n'
                                '(Path(output_dir) / ".secrets.baseline").write_text(json.dumps(baseline))'),
                answer(SUPPLY, """
                import subprocess
                import sys

                tools = Path(sys.executable).parent
                subprocess.run([str(tools / "cyclonedx-py"), "environment", sys.executable, "--output-format", "JSON",
                                "--output-file", f"{output_dir}/sbom.json"], check=True)
                done = subprocess.run([str(tools / "pip-audit"), "-r", f"{output_dir}/requirements.txt", "--no-deps",
                                       "--disable-pip", "-f", "json"], capture_output=True, text=True)
                found = json.loads(done.stdout) if done.returncode == 0 else {"dependencies": []}
                report = {"status": "ok", "vulnerable": [d for d in found["dependencies"] if d.get("vulns")]}
                (Path(output_dir) / "audit.json").write_text(json.dumps(report))
                """)),
         expect={"secrets_caught": "failed", "sbom_matches_lock": "failed", "audit_honest": "failed"},
         says={"sbom_matches_lock": r"the image does not install", "audit_honest": r"status 'ok'.*no network"},
         fix="Exclude only .env and wheels/; the SBOM of requirements.txt; keep audit()'s 'unavailable'."),
]
