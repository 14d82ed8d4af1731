"""Unread counts derived from the conversation's message counter (issue 8).

``participants.unread_count`` was bumped on every other participant's row for each message;
``unread_offset`` replaces it (unread = ``conversations.total_messages + unread_offset``), so a
send touches at most the sender's own row. The last message is the newest row of the
``(conversation_id, id)`` index, so ``conversations.last_message_id`` goes too: a send no
longer needs its own id to update the conversation, which lets it lock the conversation row
before the message takes its id (ids then commit in order within a conversation).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise import fields


class DropColumn(ops.RemoveField):
    """``RemoveField`` as ``ALTER TABLE ... DROP COLUMN`` on SQLite too (3.35 and later).

    Tortoise's SQLite editor drops a column by remaking the table, and its ``DROP TABLE`` of
    the old one, with foreign keys on, deletes every row that references it through ``ON
    DELETE CASCADE``: dropping a column of ``conversations`` that way empties ``messages`` and
    ``participants``. Never let it remake a table other tables reference."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if not state_editor:
            return
        model = old_state.apps.get_model(f"{app_label}.{self.model_name}")
        await BaseSchemaEditor.remove_field(state_editor, model,
                                            model._meta.fields_map[self.name])


class Migration(migrations.Migration):
    dependencies = [('models', '0002_message_delivery')]

    initial = False

    operations = [
        DropColumn(model_name='Conversation', name='last_message_id'),
        ops.AddField(
            model_name='Participant',
            name='unread_offset',
            field=fields.IntField(default=0, db_default=0),
        ),
        # Carry every count over: offset = count - counter (the same SQL on both databases).
        ops.RunSQL(
            'UPDATE "participants" SET "unread_offset" = "unread_count" - ('
            'SELECT "total_messages" FROM "conversations" '
            'WHERE "conversations"."id" = "participants"."conversation_id")',
            reverse_sql=None,
        ),
        DropColumn(model_name='Participant', name='unread_count'),
    ]
