"""One module per lab (`labNN.py`): its `LAB` spec, `prepare()` for grading inputs, and its `CHECKS`."""
