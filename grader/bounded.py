"""Bounded parsing of learner-written structured data (YAML, JSON, TOML) in the grader's own process.

A few hundred bytes of YAML with nested aliases describe billions of nodes: the parser shares them, but
everything after it (a comparison, `repr` in a message, `json.dumps`) walks them all. Here every parse has a
size, a depth and a node budget, and YAML aliases are counted *as expanded*; a document over a limit raises
`BoundedError` with a sentence for the learner, which the checks turn into a failure. `quote` is the bounded
`repr` for quoting a learner's value in a message.
"""

from __future__ import annotations

import json

MAX_BYTES = 2**20
MAX_DEPTH = 64
MAX_NODES = 20_000
MAX_ALIASES = 500


class BoundedError(ValueError):
    """Learner data that is not valid, or over a limit; the message names the file and what to do."""


class InvalidData(BoundedError):
    """Learner data that does not parse at all (as opposed to data over a limit)."""


def _check_size(text: str, name: str, max_bytes: int, kind: str) -> None:
    # characters ≤ bytes in UTF-8: only a text that might be over the limit is encoded to measure it
    if len(text) > max_bytes and len(text.encode("utf-8", errors="replace")) > max_bytes:
        raise BoundedError(f"{name} is over {max_bytes} bytes, the grader's limit for a {kind} file")


# --- YAML ---------------------------------------------------------------------------------------------


def load_yaml(text: str, *, name: str = "the YAML file", max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              max_nodes: int = MAX_NODES, max_aliases: int = MAX_ALIASES) -> object:
    """`yaml.safe_load(text)` within limits: bytes of text, nesting depth, nodes and scalar characters counted
    with every alias expanded (at most `max_nodes` nodes and `max_bytes` characters), and alias uses."""
    import yaml

    _check_size(text, name, max_bytes, "YAML")
    loader = _bounded_loader(yaml)(text)
    loader.limits = (name, max_bytes, max_depth, max_nodes, max_aliases)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise InvalidData(f"{name} is not valid YAML: {str(err).splitlines()[0] if str(err) else err}") from None
    except RecursionError:
        raise BoundedError(f"{name} is nested too deeply to read (more than {max_depth} levels)") from None
    finally:
        loader.dispose()


_LOADER = None


def _bounded_loader(yaml):
    """A SafeLoader that counts, while composing, what the document holds once its aliases are expanded."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER

    class BoundedLoader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self.limits = ("the YAML file", MAX_BYTES, MAX_DEPTH, MAX_NODES, MAX_ALIASES)
            self._depth = 0  # nesting depth of the node being composed
            self._nodes = 0  # nodes so far, aliases expanded
            self._chars = 0  # scalar characters so far, aliases expanded
            self._aliases = 0
            self._height = 0  # the tallest subtree composed so far at the current level
            self._sizes: dict[str, tuple[int, int, int]] = {}  # anchor → (nodes, chars, height) of its node

        def compose_node(self, parent, index):
            name, max_bytes, max_depth, max_nodes, max_aliases = self.limits
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in self.anchors:
                    self._aliases += 1
                    if self._aliases > max_aliases:
                        raise BoundedError(f"{name} uses YAML aliases more than {max_aliases} times: write it out")
                    size = self._sizes.get(event.anchor)
                    if size is None:
                        raise BoundedError(f"{name} uses a YAML alias inside its own anchor (*{event.anchor} in "
                                           f"&{event.anchor}): a structure that contains itself cannot be graded")
                    self._add(size[0], size[1])
                    self._height = max(self._height, size[2])
                    if self._depth + size[2] > max_depth:
                        raise BoundedError(f"{name} uses YAML aliases that nest deeper than {max_depth} levels: "
                                           "write it out")
                return super().compose_node(parent, index)
            anchor = getattr(event, "anchor", None)
            self._depth += 1
            if self._depth > max_depth:
                raise BoundedError(f"{name} is nested deeper than {max_depth} levels")
            nodes, chars, height = self._nodes, self._chars, self._height
            self._height = 0
            node = super().compose_node(parent, index)
            self._depth -= 1
            scalar = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            self._add(1, scalar)
            mine = self._height + 1
            self._height = max(height, mine)
            if anchor is not None:
                self._sizes[anchor] = (self._nodes - nodes, self._chars - chars, mine)
            return node

        def _add(self, nodes: int, chars: int) -> None:
            name, max_bytes, _, max_nodes, _ = self.limits
            self._nodes += nodes
            self._chars += chars
            if self._nodes > max_nodes:
                raise BoundedError(f"{name} uses YAML aliases that expand to more than {max_nodes} nodes: write "
                                   "the entries out" if self._aliases else f"{name} holds more than {max_nodes} "
                                   "entries, more than the lab can need")
            if self._chars > max_bytes:
                raise BoundedError(f"{name} uses YAML aliases that expand to more than {max_bytes} characters: "
                                   "write the entries out" if self._aliases else
                                   f"{name} holds more than {max_bytes} characters of values")

        def compose_document(self):
            node = super().compose_document()
            self._sizes = {}
            return node

    _LOADER = BoundedLoader
    return _LOADER


# --- JSON and TOML --------------------------------------------------------------------------------------


def load_json(text: str, *, name: str = "the JSON file", max_bytes: int = 5 * MAX_BYTES, max_depth: int = 100,
              parse_constant=None) -> object:
    """`json.loads(text)` within a size and a nesting depth (`parse_constant` as in json.loads)."""
    _check_size(text, name, max_bytes, "JSON")
    try:
        value = json.loads(text, **({"parse_constant": parse_constant} if parse_constant else {}))
    except RecursionError:
        raise BoundedError(f"{name} is nested deeper than {max_depth} levels") from None
    except ValueError as err:  # JSONDecodeError, and whatever parse_constant raises
        raise InvalidData(f"{name} is not valid JSON: {err}") from None
    _check_depth(value, name, max_depth)
    return value


def load_toml(text: str, *, name: str = "the TOML file", max_bytes: int = MAX_BYTES,
              max_depth: int = MAX_DEPTH) -> dict:
    """`tomllib.loads(text)` within a size and a nesting depth."""
    import tomllib

    _check_size(text, name, max_bytes, "TOML")
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidData(f"{name} is not valid TOML: {err}") from None
    except RecursionError:
        raise BoundedError(f"{name} is nested deeper than {max_depth} levels") from None
    _check_depth(value, name, max_depth)
    return value


def _check_depth(value: object, name: str, max_depth: int) -> None:
    """Refuse a parsed value nested deeper than `max_depth` (iteratively: no recursion on learner data)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > max_depth:
                    raise BoundedError(f"{name} is nested deeper than {max_depth} levels")
                stack.append((child, depth + 1))


# --- quoting a learner's value in a message ------------------------------------------------------------


def quote(value: object, limit: int = 200, depth: int = 3) -> str:
    """`repr(value)` of at most `limit` characters and `depth` levels of containers; what is cut is "…".

    The work is bounded by `limit` whatever `value` is (a structure that shares or contains itself too).
    """
    parts: list[str] = []
    budget = [max(limit, 8) + 1]

    def put(text: str) -> bool:
        if budget[0] <= 0:
            return False
        parts.append(text[:budget[0]])
        budget[0] -= len(text)
        return budget[0] > 0

    def walk(item: object, level: int) -> bool:
        if isinstance(item, dict):
            pairs, opening, closing = list(_head(item.items(), budget[0])), "{", "}"
        elif isinstance(item, (list, tuple, set, frozenset)):
            pairs, opening, closing = [(None, v) for v in _head(item, budget[0])], *_brackets(item)
        else:
            return put(_repr_head(item, budget[0]))
        if not pairs:
            return put(opening + closing)
        if level >= depth:
            return put(opening + "…" + closing)
        if not put(opening):
            return False
        for index, (key, child) in enumerate(pairs):
            if index and not put(", "):
                return False
            if key is not None and not (walk(key, level + 1) and put(": ")):
                return False
            if not walk(child, level + 1):
                return False
        if len(pairs) < len(item):
            return put(", …" + closing)
        return put(closing)

    walk(value, 0)
    text = "".join(parts)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _head(items, count: int):
    """At most `count` items of an iterable (a container's items beyond the budget are never touched)."""
    out = []
    for item in items:
        if len(out) >= count:
            break
        out.append(item)
    return out


def _brackets(item) -> tuple[str, str]:
    if isinstance(item, list):
        return "[", "]"
    if isinstance(item, tuple):
        return "(", ")"
    return ("{", "}") if isinstance(item, set) else ("frozenset({", "})")


def _repr_head(item: object, budget: int) -> str:
    """repr of a scalar, long strings and bytes cut before repr (repr of a 1 GB string is not built)."""
    if isinstance(item, (str, bytes)) and len(item) > budget:
        return repr(item[:budget]) + "…"
    try:
        return repr(item)[:budget + 1]
    except Exception:  # a repr that fails (or an int too long to print) must not fail the message
        return f"<{type(item).__name__}>"
