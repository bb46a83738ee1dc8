"""mlops-grade: the course autograder.

Learner code runs in a sandbox and only produces outputs; this package judges them outside.
Heavy modules are imported lazily so that `mlops-grade --help` stays fast.
"""

import os

__version__ = "0.1.0"

# The grader's own numeric work (recomputed metrics, reference models) runs beside sandboxes that are each
# given one core: one thread per pool, so OpenMP/BLAS do not start a thread per core in every process.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
