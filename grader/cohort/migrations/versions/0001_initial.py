"""The first gradebook schema: learners, submissions, grades, overrides, extensions, labs, audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "learners",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(400), nullable=False, server_default=""),
        sa.Column("email", sa.String(400), nullable=False, server_default=""),
        sa.Column("sis_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("login_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("lms_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("section", sa.String(200), nullable=False, server_default=""),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("learner_id", sa.String(200), sa.ForeignKey("learners.id"), nullable=False, index=True),
        sa.Column("lab", sa.String(100), nullable=False, index=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("original", sa.Text, nullable=False, server_default=""),
        sa.Column("source", sa.String(40), nullable=False, server_default=""),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current", sa.Boolean, nullable=False),
        sa.UniqueConstraint("learner_id", "lab", "content_hash", name="uq_submission"),
    )
    op.create_table(
        "grades",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("submission_id", sa.Integer, sa.ForeignKey("submissions.id"), nullable=False, index=True),
        sa.Column("learner_id", sa.String(200), sa.ForeignKey("learners.id"), nullable=False, index=True),
        sa.Column("lab", sa.String(100), nullable=False, index=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("grader_version", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("max_score", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("graded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("graded_by", sa.String(200), nullable=False, server_default=""),
        sa.UniqueConstraint("learner_id", "lab", "content_hash", "grader_version", name="uq_grade"),
    )
    op.create_table(
        "overrides",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("learner_id", sa.String(200), sa.ForeignKey("learners.id"), nullable=False, index=True),
        sa.Column("lab", sa.String(100), nullable=False),
        sa.Column("check", sa.String(200), nullable=False, server_default=""),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("author", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "extensions",
        sa.Column("learner_id", sa.String(200), sa.ForeignKey("learners.id"), primary_key=True),
        sa.Column("lab", sa.String(100), primary_key=True),
        sa.Column("hours", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "labs",
        sa.Column("lab", sa.String(100), primary_key=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("late_policy", sa.String(100), nullable=False, server_default="none"),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("learner_id", sa.String(200), nullable=False, index=True),
        sa.Column("lab", sa.String(100), nullable=False),
        sa.Column("check", sa.String(200), nullable=False, server_default=""),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("old", sa.Float, nullable=True),
        sa.Column("new", sa.Float, nullable=True),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("actor", sa.String(200), nullable=False, server_default=""),
    )


def downgrade() -> None:
    for table in ("audit", "labs", "extensions", "overrides", "grades", "submissions", "learners"):
        op.drop_table(table)
