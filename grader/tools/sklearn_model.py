"""Probe a learner's scikit-learn artifact in a fresh sandboxed process (the harness writes result.json).

Runs inside the sandbox: it must not import the grader. Inputs are .npy files (never pickles); labels of
hidden data never come here.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import probe_main  # noqa: E402
from skops_guard import Refused, load  # noqa: E402


def describe_steps(model) -> list:
    steps = getattr(model, "steps", None) or [("model", model)]
    described = []
    for name, step in steps:
        info = {"name": str(name), "class": f"{type(step).__module__}.{type(step).__qualname__}",
                "transformer": hasattr(step, "transform") and not hasattr(step, "predict")}
        seen = getattr(step, "n_samples_seen_", None)
        if seen is not None:
            info["n_samples_seen"] = int(seen) if getattr(seen, "ndim", 0) == 0 else int(max(seen))
        mean = getattr(step, "mean_", None)
        if mean is not None:
            info["mean"] = [float(v) for v in mean]
        scale = getattr(step, "scale_", None)
        if scale is not None:
            info["scale"] = [float(v) for v in scale]
        described.append(info)
    return described


def add_arguments(parser) -> None:
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--cv-folds", type=int, default=0)
    parser.add_argument("--cv-seed", type=int, default=0)


def run(args, inputs) -> dict:
    import numpy as np
    import pandas as pd
    import skops.io as sio

    artifact = Path(args.work) / args.artifact
    if os.path.islink(artifact) or not artifact.is_file():
        return {"error": f"{args.artifact} was not found (or is not a regular file)"}
    try:  # every type in the file checked against an explicit list before skops loads anything
        model = load(artifact, sio)
    except Refused as err:
        text = str(err)
        return {"error": (f"{args.artifact} is {text}" if text.startswith("not a skops") else
                          f"{args.artifact} was refused: {text}")[:500]}
    except Exception as err:
        return {"error": f"{args.artifact} could not be loaded: {type(err).__name__}: {err}"[:500]}
    result = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
              "is_pipeline": type(model).__name__ == "Pipeline" and hasattr(model, "steps"),
              "has_predict_proba": hasattr(model, "predict_proba"), "steps": describe_steps(model), "proba": {}}
    columns_file = Path(args.input) / "columns.npy"
    columns = [str(c) for c in np.load(columns_file, allow_pickle=False)] if columns_file.exists() else None
    for file in sorted(Path(args.input).glob("X_*.npy")):
        X = np.load(file, allow_pickle=False)
        frame = pd.DataFrame(X, columns=columns) if columns else X
        try:
            result["proba"][file.stem[2:]] = [float(p) for p in model.predict_proba(frame)[:, 1]]
        except Exception as err:
            result["proba_error"] = f"predict_proba failed: {type(err).__name__}: {err}"[:500]
            break
    if args.cv_folds and "proba_error" not in result:
        result["cv"] = cross_validate(model, args, columns)
    return result


def cross_validate(model, args, columns) -> dict:
    """Re-run the lab's cross-validation on a clone of the learner's pipeline."""
    import numpy as np
    import pandas as pd
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X = np.load(Path(args.input) / "train_features.npy", allow_pickle=False)
    y = np.load(Path(args.input) / "train_labels.npy", allow_pickle=False)
    try:
        cv = StratifiedKFold(n_splits=args.cv_folds, shuffle=True, random_state=args.cv_seed)
        scores = cross_val_score(clone(model), pd.DataFrame(X, columns=columns), y, cv=cv, scoring="roc_auc")
        return {"mean": float(scores.mean()), "std": float(scores.std())}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"[:300]}


if __name__ == "__main__":
    probe_main(run, add_arguments)
