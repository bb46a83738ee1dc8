"""Load a learner's skops file trusting an explicit list of types, never a module prefix (runs in probes).

skops' own `get_untrusted_types` answers relative to skops' default trust (every scikit-learn estimator,
`FunctionTransformer` included), and a prefix rule such as "numpy." then admits functions: a
`FunctionTransformer(func=numpy.load, kw_args={"allow_pickle": True})` is built only of "trusted" names and
runs code when the model predicts. So this guard reads the file's `schema.json` itself, visits every node
(iteratively, with size and node caps), and admits a node only when its loader and its exact
`module.class` are on the lists below: the estimators and transformers the labs use, their fitted
internals, and the NumPy arrays, dtypes and random states skops needs. No function, method or partial is
ever admitted, and a `FunctionTransformer` only as the identity (no `func`/`inverse_func`: what
`ColumnTransformer(..., "passthrough")` stores). Anything else is refused with a message naming it, before
skops loads anything.

Runs inside a probe sandbox (beside harness.py): it must not import the grader.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

MAX_SCHEMA_BYTES = 64 * 2**20  # uncompressed schema.json
MAX_NODES = 2_000_000
MAX_MEMBERS = 100_000

_NUMPY_SCALARS = frozenset({"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32",
                            "uint16", "uint8", "bool_", "bool", "intp", "uintp", "str_", "bytes_"})

# estimators and transformers the labs (and their wrong-answer cases) save, with their fitted internals
ESTIMATORS = frozenset({
    "sklearn.pipeline.Pipeline",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.MaxAbsScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._polynomial.PolynomialFeatures",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",  # identity only: see _function_transformer
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.dummy.DummyClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
})

# loader → the exact module.class names it may carry (None: any name is meaningless for it, e.g. a dict)
ALLOWED = {
    "ObjectNode": ESTIMATORS,
    "DictNode": frozenset({"builtins.dict"}),
    "ListNode": frozenset({"builtins.list"}),
    "TupleNode": frozenset({"builtins.tuple"}),
    "SliceNode": frozenset({"builtins.slice"}),
    "JsonNode": frozenset({f"builtins.{t}" for t in ("str", "int", "float", "bool", "NoneType", "list", "dict")}),
    "NdArrayNode": frozenset({"numpy.ndarray"} | {f"numpy.{t}" for t in _NUMPY_SCALARS}),
    "DTypeNode": frozenset({"numpy.dtype"}),
    "TypeNode": frozenset({f"numpy.{t}" for t in _NUMPY_SCALARS} | {f"builtins.{t}" for t in ("str", "int", "float",
                                                                                               "bool", "object")}),
    "RandomStateNode": frozenset({"numpy.random.mtrand.RandomState"}),
    "RandomGeneratorNode": frozenset({"numpy.random._generator.Generator"}),
    "TreeNode": frozenset({"sklearn.tree._tree.Tree"}),
    "LossNode": frozenset({"sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
                           "sklearn._loss._loss.CyExponentialLoss"}),
}

_CALLABLE_LOADERS = ("FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode", "ReduceNode")


class Refused(Exception):
    """The file holds something this guard does not trust (the message names it)."""


def _name(node: dict) -> str:
    return f"{node.get('__module__')}.{node.get('__class__')}"


def _is_null(node) -> bool:
    return isinstance(node, dict) and node.get("__loader__") == "JsonNode" and node.get("content") == "null"


def _function_transformer(node: dict) -> None:
    """A FunctionTransformer is admitted only as the identity: no func, no inverse_func, no kw_args."""
    state = (node.get("content") or {}).get("content") or {}
    for key in ("func", "inverse_func"):
        if key in state and not _is_null(state[key]):
            inner = state[key]
            what = _name(inner) if isinstance(inner, dict) and "__loader__" in inner else type(inner).__name__
            raise Refused(f"a FunctionTransformer with {key}={what}: a function inside a model runs code when it "
                          "predicts; refused (only the identity FunctionTransformer, as a ColumnTransformer's "
                          "'passthrough', is allowed)")


def schema_of(path: Path) -> dict:
    """The parsed schema.json of a skops file, with the zip's size caps checked first."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise Refused(f"not a skops file (not a zip archive: {err})") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise Refused(f"not a skops file: {len(members)} members in its archive")
        info = next((m for m in members if m.filename == "schema.json"), None)
        if info is None:
            raise Refused("not a skops file (no schema.json in the archive)")
        if info.file_size > MAX_SCHEMA_BYTES:
            raise Refused(f"its schema.json is {info.file_size} bytes, more than {MAX_SCHEMA_BYTES}")
        with archive.open(info) as handle:
            raw = handle.read(MAX_SCHEMA_BYTES + 1)
    if len(raw) > MAX_SCHEMA_BYTES:
        raise Refused(f"its schema.json is more than {MAX_SCHEMA_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise Refused(f"its schema.json is not readable JSON ({type(err).__name__})") from None


def audit(schema) -> list[str]:
    """Every module.class the schema names (sorted), after checking each node against the allow-list."""
    seen: set[str] = set()
    stack, count = [schema], 0
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise Refused(f"its schema holds more than {MAX_NODES} nodes")
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "__loader__" in node:
            loader, name = node.get("__loader__"), _name(node)
            if loader in _CALLABLE_LOADERS:
                raise Refused(f"it holds a callable, {name} ({loader}): functions, methods and partials inside a "
                              "model run code when it is used; refused")
            allowed = ALLOWED.get(loader) if isinstance(loader, str) else None
            if allowed is None:
                raise Refused(f"it holds {name} stored as {loader!r}, a kind of object this grader does not load")
            if name not in allowed:
                raise Refused(f"it holds the type {name}, which is not on the grader's list of safe scikit-learn/NumPy "
                              "types: build the model from the lab's estimators (Pipeline, SimpleImputer, "
                              "StandardScaler, LogisticRegression, HistGradientBoostingClassifier, …)")
            if name == "sklearn.preprocessing._function_transformer.FunctionTransformer":
                _function_transformer(node)
            seen.add(name)
        stack.extend(node.values())
    return sorted(seen)


def load(path: Path, sio):
    """The object in the skops file `path`, after `audit` admitted every node (raises Refused otherwise).

    `sio` is `skops.io` as the caller imported it; skops is told to trust exactly the types it asks about,
    each of which the audit has just admitted (skops' own default trust is never relied on).
    """
    admitted = set(audit(schema_of(path)))
    asked = sio.get_untrusted_types(file=path)
    beyond = sorted(set(asked) - admitted)
    if beyond:  # skops sees something the schema walk did not: never load it
        raise Refused(f"skops asks to trust {beyond[:5]}, which the grader's audit did not admit")
    return sio.load(path, trusted=asked)
