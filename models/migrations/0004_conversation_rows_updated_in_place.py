"""Conversation rows updated in place by every send.

Each message moves its conversation's ``updated_at``, and two indexes held it (``(status,
updated_at)``, ``(kind, updated_at)``). On PostgreSQL an update that changes an indexed column
cannot be made in place (HOT): every message wrote a new row version, an entry in each of the
table's indexes, and a dead row for autovacuum (0 of 10,328 updates in place under the rooms
benchmark). On SQLite each send rewrote both indexes' pages. The lists never used them: they
select through participants with an OR (``visible_filter``) and sort what they find.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0003_derived_unread_counts')]

    initial = False

    operations = [
        ops.RemoveIndex(model_name='Conversation', fields=['status', 'updated_at']),
        ops.RemoveIndex(model_name='Conversation', fields=['kind', 'updated_at']),
    ]
