"""Lab 01's wrong-answer cases: mistakes learners make in a pytest suite, and the verdict each must get."""

from grader.cases import Case, add_cell, answer, replace

# split tests that only check the parts add up (also the honest baseline of tests/adversarial's tampering case)
WEAK_SPLIT_TESTS = """
def test_split_returns_four_parts(Xy):
    assert len(stratified_split(*Xy)) == 4


def test_split_parts_add_up(Xy):
    X_train, X_test, _, _ = stratified_split(*Xy)
    assert len(X_train) + len(X_test) == len(Xy[0])
"""

CASES = [
    Case(
        "one_wrong_expected_value",
        "one assertion expects a value the correct code never gives (3 distinct targets instead of 2)",
        edits=(replace("answer-12", 'assert summary.loc["target", "distinct"] == 2',
                       'assert summary.loc["target", "distinct"] == 3'),),
        expect={"tests_pass_on_reference": "partial"},
        says={"tests_pass_on_reference": r"test_schema_summary_has_one_row_per_column.*wrong test"},
        fix="Compute the expected value by hand (or print it once on the lesson's code) before asserting it.",
    ),
    Case(
        "test_reads_the_notebooks_file",
        "a test reads the notebook's data/breast_cancer.csv: it passes in the notebook, fails anywhere else",
        edits=(replace("answer-06", "\ndef test_column_names_are_snake_case():",
                       '\ndef test_the_notebook_data_loads():\n    X, y = load_csv("data/breast_cancer.csv")\n'
                       "    assert len(X) == 569\n\n\ndef test_column_names_are_snake_case():"),),
        expect={"tests_pass_on_reference": "partial"},
        says={"tests_pass_on_reference": r"test_the_notebook_data_loads"},
        fix="Make the data inside the test: the csv_path fixture or write_breast_cancer_csv(tmp_path / ...).",
    ),
    Case(
        "import_error_at_module_level",
        "the tests import a function that does not exist, so pytest cannot even collect the file",
        edits=(replace("answer-06", "LOAD_CSV_TESTS = '''\n",
                       "LOAD_CSV_TESTS = '''\nfrom mlops_kit.data import split_data\n\n"),),
        expect={"tests_collected": "failed", "tests_pass_on_reference": "skipped", "mutants_killed": "skipped",
                "hidden_mutants_killed": "skipped"},
        says={"tests_collected": r"could not collect"},
        fix="Import only what mlops_kit.data defines (the header already imports it); run the suite once.",
    ),
    Case(
        "split_tests_check_too_little",
        "the split tests only check that train and test add up: seed, size, stratification and alignment go untested",
        edits=(answer("answer-09", f"SPLIT_TESTS = '''{WEAK_SPLIT_TESTS}'''"),),
        expect={"mutants_killed": "partial", "hidden_mutants_killed": "partial"},
        says={"mutants_killed": r"caught \d of 10 mutants", "hidden_mutants_killed": r"caught \d of 7 hidden"},
        fix="Pin down every promise: the same seed gives the same rows, another seed others, exact sizes, class shares.",
    ),
    Case(
        "no_test_of_the_error",
        "nobody checks that a missing target column raises KeyError",
        edits=(replace("answer-06", '''def test_load_csv_without_the_target_column_raises_key_error(csv_path):
    with pytest.raises(KeyError, match="no column named"):
        load_csv(csv_path, target="label")


''', ""),),
        expect={"mutants_killed": "partial", "hidden_mutants_killed": "partial"},
        says={"mutants_killed": r"caught 9 of 10", "hidden_mutants_killed": r"caught 6 of 7"},
        fix="with pytest.raises(KeyError): load_csv(csv_path, target='label') — the error type is part of the contract.",
    ),
    Case(
        "schema_tests_never_look_closely",
        "the schema test only checks that schema_summary returns something",
        edits=(answer("answer-12", """
            SCHEMA_TESTS = '''
            def test_schema_summary_returns_a_frame():
                summary = schema_summary(pd.DataFrame({"a": [1.0, None, 3.0]}))
                assert summary is not None and len(summary) == 1
            '''
            """),),
        expect={"mutants_killed": "partial", "hidden_mutants_killed": "partial"},
        fix="Build a frame with two missing values and assert every field: missing, min, max, distinct.",
    ),
    Case(
        "tests_read_the_source",
        "a test reads the implementation's source instead of calling it",
        edits=(add_cell("answer-12", '''
            SCHEMA_TESTS += """


            def test_schema_summary_source_counts_missing_values():
                import inspect
                assert "isna" in inspect.getsource(schema_summary)
            """
            '''),),
        expect={"mutants_killed": "failed", "hidden_mutants_killed": "failed"},
        says={"mutants_killed": r"inspects the implementation", "hidden_mutants_killed": r"inspects the implementation"},
        fix="Call the function on data you built and assert on what it returns.",
    ),
]


def _fingerprint_case() -> Case:
    """A test that pins the module's text: it finds data.py on sys.path by name pieces (past the grader's check of
    the test file's text), and hashes what follows the grader's one-line variant header, so it passes on the
    reference and fails on every mutant; the behaviour-preserving rewrites of the reference expose it."""
    import hashlib

    from grader.checks.lab01 import reference_source

    digest = hashlib.sha256((reference_source() + "\n").encode()).hexdigest()
    return Case(
        "tests_fingerprint_the_source",
        "a test hashes the module's file instead of calling its functions (it passes on the reference and fails "
        "on every mutant)",
        edits=(add_cell("answer-12", f'''
            SCHEMA_TESTS += """


            def test_the_module_is_unchanged():
                import hashlib
                import os
                import sys

                for entry in sys.path:
                    candidate = os.path.join(entry, "mlops_kit", "da" + "ta.py")
                    if os.path.isfile(candidate):
                        with open(candidate, encoding="utf-8") as handle:
                            text = handle.read()
                        if text.startswith("# variant"):
                            body = text.split(chr(10), 1)[1]
                            assert hashlib.sha256(body.encode()).hexdigest() == "{digest}"
                        return
            """
            '''),),
        expect={"mutants_killed": "failed", "hidden_mutants_killed": "failed"},
        says={"mutants_killed": r"fail on a correct variant of the code .*test_the_module_is_unchanged.*they test its "
                                r"text, not its behaviour",
              "hidden_mutants_killed": r"fail on a correct variant of the code"},
        fix="Call the functions on data you built and assert on what they return or raise, never on their source.",
    )


CASES.append(_fingerprint_case())
