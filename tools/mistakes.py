"""Write each lesson's "Common mistakes" section from its lab's wrong-answer cases (grader/checks/labNN_cases.py).

A case is a real learner mistake that the course's tests grade for real (tests/test_wrong_answers.py), so the
section says only what the grader is proven to say: the mistake, the checks it fails, an excerpt of the grader's
message (the case's `says` pattern, written as text), the fix and the lesson section to reread.

    python tools/mistakes.py            # rewrite the sections in curriculum/
    python tools/mistakes.py --check    # exit 1 when a lesson's section is missing or stale (CI)

The section is the markdown cell that starts with HEADING. A lesson without one gets it before its
"Check your understanding" section (else before its other-tools section, else at the end).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HEADING = "## Common mistakes"
BEFORE = ("## Check your understanding", "## The same job with other tools")


def readable(pattern: str) -> str:
    """A `says` regular expression as the words it matches: `fitted on all \\d+ rows` → 'fitted on all N rows'."""
    alternatives, depth, text, i = [], 0, "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            text += {"d": "N", "s": " ", "w": "x", "b": ""}.get(nxt, nxt)
            i += 2
            if nxt in "dsw" and i < len(pattern) and pattern[i] in "+*?":
                i += 1
            continue
        if ch == "." and i + 1 < len(pattern) and pattern[i + 1] in "*+":
            text += " … "
            i += 3 if i + 2 < len(pattern) and pattern[i + 2] == "?" else 2
            continue
        if ch == "[":
            end = pattern.find("]", i + 1)
            text += "…"
            i = len(pattern) if end < 0 else end + 1
            continue
        if ch == "(":
            depth += 1
            i += 3 if pattern.startswith("(?:", i) else 1
            continue
        if ch == ")":
            depth = max(0, depth - 1)
        elif ch == "|":
            if depth:
                text += "/"
            else:
                alternatives.append(text)
                text = ""
        elif ch in "?*+^$":
            pass
        elif ch == "{" and re.match(r"\{\d+(,\d*)?\}", pattern[i:]):
            i = pattern.index("}", i)
        else:
            text += ch
        i += 1
    alternatives.append(text)
    cleaned = [re.sub(r"\s*…\s*", " … ", re.sub(r"\s+", " ", a)).strip() for a in alternatives]
    return " or ".join(f"“{a}”" for a in cleaned if a)


def _check_list(names: list[str], hidden: set[str]) -> str:
    shown = [f"`{n}`" + (" (hidden)" if n in hidden else "") for n in names]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def section(module) -> str:
    """The markdown of lab `module`'s "Common mistakes" section."""
    from grader.cases import cases_of

    lab, cases = module.LAB, cases_of(module)
    checks = {c.name: c for c in module.CHECKS}
    hidden = {c.name for c in module.CHECKS if not c.visible}
    lines = [HEADING, "",
             f"The mistakes learners make in lab {lab.number}, each one tried on the grader: the course's tests grade "
             f"them for real (`grader/checks/lab{lab.number}_cases.py`), so what you read here is what the grader "
             "says. Open one when your self-check fails and you cannot see why.", ""]
    for case in cases:
        failed = [n for n, status in case.expect.items() if status in ("failed", "partial")]
        causes = [n for n in failed if n in case.says] or failed[:1]
        if len(failed) == 1 and causes == failed:
            said = [readable(case.says[n]) for n in causes if n in case.says]
        else:
            said = [f"`{n}` {readable(case.says[n])}" for n in causes if n in case.says]
        sections = list(dict.fromkeys(checks[n].section for n in causes))
        mistake = case.mistake[:1].upper() + case.mistake[1:]
        body = [f"The grader fails {_check_list(failed, hidden)}."]
        if said:
            body.append("It says " + "; ".join(said) + ".")
        if case.fix:
            body.append(f"**Fix:** {case.fix}")
        body.append("Reread " + " and ".join(f"§ {s}" for s in sections) + ".")
        lines += [f"<details><summary>{_html(mistake)}</summary>", "", " ".join(body), "", "</details>", ""]
    return "\n".join(lines).rstrip("\n")


def _html(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def place(nb: dict, text: str) -> bool:
    """Put `text` as the lesson's section (replacing the old one); True when the notebook changed."""
    cells = nb["cells"]
    for cell in cells:
        if cell["cell_type"] == "markdown" and _source(cell).startswith(HEADING):
            if _source(cell) == text:
                return False
            cell["source"] = text
            return True
    index = len(cells)
    for heading in BEFORE:
        found = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and _source(c).startswith(heading)]
        if found:
            index = found[0]
            break
    cells.insert(index, {"cell_type": "markdown", "id": "common-mistakes", "metadata": {}, "source": text})
    return True


def sync(check: bool = False) -> list[str]:
    """Write (or, with `check`, only compare) every lesson's section; the lessons that were stale."""
    from grader.cases import cases_of
    from grader.labs import lab_modules

    stale = []
    for module in lab_modules().values():
        if not cases_of(module):
            continue
        path = REPO / module.LAB.lesson
        nb = json.loads(path.read_text(encoding="utf-8"))
        if place(nb, section(module)):
            stale.append(module.LAB.lesson)
            if not check:
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report lessons whose section is missing or stale")
    args = parser.parse_args(argv)
    stale = sync(check=args.check)
    for lesson in stale:
        print(f"{lesson}: {'stale: run `make lessons`' if args.check else 'common mistakes written'}")
    if not stale:
        print("every lesson's common mistakes are up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
