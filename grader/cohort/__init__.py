"""Instructor cohort grading: roster and collection, a resumable gradebook, late policy and overrides, exports,
private hidden checks and scale-out on Dask. One module, one job:

- `roster.py`     the class list (CSV) and the learner ids LMS exports use
- `intake.py`     `mlops-grade collect`: folder trees, Canvas/Moodle zips, git repositories → a cohort folder
- `gradebook.py`  SQLAlchemy models and the session (SQLite in WAL mode, or PostgreSQL), migrated on open
- `policy.py`     deadlines, late policies and extensions, applied at export time
- `runner.py`     grade what is new or changed (content hash + grader version), locally or on Dask
- `private.py`    an instructor's private checks merged over a lab's
- `exports.py`    Canvas, Moodle, Gradescope, JUnit, CSV and HTML (per learner, and a cohort summary)
"""
