"""mlops-grade: the course autograder.

Learner code runs in a sandbox and only produces outputs; this package judges them outside.
Heavy modules are imported lazily so that `mlops-grade --help` stays fast.
"""

__version__ = "0.1.0"
