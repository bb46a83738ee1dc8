"""The roster: who is in the cohort, and the ids LMS exports and git hosts know them by.

A roster is a CSV with a header. `id` (or `learner`, `learner_id`) is required; optional columns: `name`, `email`,
`sis_id` (Canvas SIS User ID / Moodle ID number), `login_id` (Canvas SIS Login ID / Moodle username), `lms_id`
(Canvas user id / Moodle participant id, as in the submission zips' file names), `section`, `git` (the name of
the learner's repository or bundle) and `extension_hours` (extra hours on the deadline of the lab being graded).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

SAFE_ID = re.compile(r"[^A-Za-z0-9._@+-]")


def safe_id(text: str) -> str:
    """A learner id usable as a folder name: no separators, no dot-only names."""
    cleaned = SAFE_ID.sub("_", str(text).strip())[:120]
    if not cleaned or set(cleaned) <= {"."}:
        raise ValueError(f"{text!r} cannot be used as a learner id")
    return cleaned


@dataclass
class Member:
    id: str
    name: str = ""
    email: str = ""
    sis_id: str = ""
    login_id: str = ""
    lms_id: str = ""
    section: str = ""
    git: str = ""
    extension_hours: float = 0.0

    def fields(self) -> dict:
        return {"name": self.name, "email": self.email, "sis_id": self.sis_id, "login_id": self.login_id,
                "lms_id": self.lms_id, "section": self.section}


@dataclass
class Roster:
    members: dict[str, Member] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "Roster":
        text = Path(path).read_text(encoding="utf-8-sig")
        reader = csv.DictReader(text.splitlines())
        header = {h.strip().lower(): h for h in reader.fieldnames or []}
        key = next((header[k] for k in ("id", "learner", "learner_id") if k in header), None)
        if key is None:
            raise ValueError(f"{path}: the roster needs an `id` column; found {', '.join(header) or 'no header'}")
        roster = cls()
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            raw = row.get(key.strip().lower(), "")
            if not raw:
                raise ValueError(f"{path}, line {line}: a learner without an id")
            member_id = safe_id(raw)
            if member_id in roster.members:
                raise ValueError(f"{path}, line {line}: learner {member_id!r} is listed twice")
            try:
                extension = float(row.get("extension_hours") or 0)
            except ValueError:
                raise ValueError(f"{path}, line {line}: extension_hours {row['extension_hours']!r} is not a number") from None
            roster.members[member_id] = Member(
                id=member_id, name=row.get("name", ""), email=row.get("email", ""), sis_id=row.get("sis_id", ""),
                login_id=row.get("login_id", ""), lms_id=row.get("lms_id", ""), section=row.get("section", ""),
                git=row.get("git", ""), extension_hours=extension)
        return roster

    def resolve(self, *keys: str) -> Member | None:
        """The member any of `keys` names: the roster id, an LMS id, an email, a login, a git name or a name."""
        for key in keys:
            if not key:
                continue
            wanted = str(key).strip().lower()
            for member in self.members.values():
                if wanted in {member.id.lower(), member.lms_id.lower(), member.email.lower(), member.login_id.lower(),
                              member.git.lower(), member.sis_id.lower()} - {""}:
                    return member
            squashed = re.sub(r"[^a-z0-9]", "", wanted)
            for member in self.members.values():
                if member.name and re.sub(r"[^a-z0-9]", "", member.name.lower()) == squashed:
                    return member
        return None

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        return iter(self.members.values())
