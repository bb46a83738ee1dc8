"""A Containerfile (Dockerfile) read as data: instructions with line numbers, grouped into build stages.

Enough of the Dockerfile syntax for policy checks: comments, line continuations, JSON and shell forms, stage
names, ARG defaults before the first FROM and ${VAR} references. Learner text: callers cap its size first.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

SECRET_NAME = re.compile(r"(?i)(secret|token|passw(or)?d|pwd|api[_-]?key|access[_-]?key|private[_-]?key|credential)")


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the text after the keyword, continuations joined
    line: int  # 1-based line where it starts

    def flags(self) -> dict:
        """Leading --name=value flags (COPY --from=builder, HEALTHCHECK --interval=10s)."""
        found, text = {}, self.args
        while True:
            match = re.match(r"\s*--([a-z-]+)(?:=(\S*))?(\s+|$)", text)
            if not match:
                return found
            found[match.group(1)] = match.group(2) or ""
            text = text[match.end():]

    def words(self) -> list[str]:
        """The arguments without leading flags: the JSON array's items, or the shell words."""
        text = re.sub(r"^(\s*--[a-z-]+(=\S*)?\s+)+", "", self.args)
        if text.lstrip().startswith("["):
            try:
                value = json.loads(text)
                if isinstance(value, list):
                    return [str(v) for v in value]
            except ValueError:
                pass
        try:
            return shlex.split(text, comments=False)
        except ValueError:  # an unbalanced quote: Docker would keep the words as they are
            return text.split()


@dataclass
class Stage:
    index: int
    base: str  # FROM's image (as written)
    name: str  # AS name, or ""
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Containerfile:
    instructions: list[Instruction]
    global_args: dict  # ARG name -> default ("" if none) declared before the first FROM
    stages: list[Stage]

    @property
    def final(self) -> Stage | None:
        return self.stages[-1] if self.stages else None

    def stage_names(self) -> set[str]:
        return {s.name for s in self.stages if s.name} | {str(s.index) for s in self.stages}


class ParseError(ValueError):
    """The file is not a Containerfile we can read (no FROM, an instruction with no keyword)."""


def parse(text: str) -> Containerfile:
    """Instructions, global ARGs and stages of a Containerfile's text."""
    instructions, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as Docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        instructions.append(_instruction(pending, start))
        pending = ""
    if pending.strip():
        instructions.append(_instruction(pending, start))
    global_args, stages = {}, []
    for item in instructions:
        if item.keyword == "FROM":
            words = item.words()
            base = words[0] if words else ""
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else ""
            stages.append(Stage(index=len(stages), base=base, name=name, line=item.line))
        elif not stages:
            if item.keyword == "ARG":
                for word in item.words():
                    key, _, value = word.partition("=")
                    global_args[key] = value.strip("\"'")
            elif item.keyword not in ("ARG",):
                raise ParseError(f"line {item.line}: {item.keyword} before the first FROM")
        else:
            stages[-1].instructions.append(item)
    if not stages:
        raise ParseError("no FROM instruction")
    return Containerfile(instructions, global_args, stages)


def _instruction(text: str, line: int) -> Instruction:
    keyword, _, args = text.strip().partition(" ")
    if not re.fullmatch(r"[A-Za-z]+", keyword):
        raise ParseError(f"line {line}: {keyword[:40]!r} is not an instruction")
    return Instruction(keyword.upper(), args.strip(), line)


def arg_reference(base: str) -> str | None:
    """The ARG name a FROM refers to (`${BASE_IMAGE}`, `$BASE_IMAGE`), else None."""
    match = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}?", base)
    return match.group(1) if match else None


def pinned(image: str) -> bool:
    """Whether an image reference names a fixed version: a digest, or a tag other than latest."""
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def env_pairs(item: Instruction) -> list[tuple[str, str]]:
    """ENV/ARG's name=value pairs (also the old `ENV NAME value` form)."""
    words = item.words()
    if item.keyword == "ENV" and words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        pairs.append((key, value.strip("\"'") if sep else ""))
    return pairs
