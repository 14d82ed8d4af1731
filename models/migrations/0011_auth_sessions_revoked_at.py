"""An index on ``auth_sessions.revoked_at``: each node asks every ``SESSION_RECHECK_SECONDS``
which sessions were revoked lately (backend/auth/sessions.py ``recently_revoked``), a range
over this column whose answer is the few revocations of that window, not the whole table.

The model does not declare the index (``RunSQL`` keeps it out of the migrations' model state):
the same statement on both databases.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0010_message_search')]

    initial = False

    operations = [
        ops.RunSQL(
            'CREATE INDEX IF NOT EXISTS "auth_sessions_revoked_at" '
            'ON "auth_sessions" ("revoked_at")',
            reverse_sql='DROP INDEX IF EXISTS "auth_sessions_revoked_at"',
        ),
    ]
