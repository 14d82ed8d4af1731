"""The per-conversation event log (issue 18): ``conversation_events``, the log's epoch, and
each conversation's position counter and retention floor.

The two columns are added with ``ALTER TABLE ... ADD COLUMN`` on both databases (Tortoise's
``AddField`` does not remake the table for a plain column), with ``db_default`` so that rows
already there get 0: existing conversations start their log at position 1. The epoch is made
here, at random, once per database.
"""

import secrets

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from typing import Any

from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops


async def make_epoch(apps: Any, schema_editor: Any) -> None:
    epoch = secrets.token_hex(8)
    await schema_editor.client.execute_query(
        f"INSERT INTO \"event_log_epoch\" (\"id\", \"epoch\") VALUES (1, '{epoch}')")


class Migration(migrations.Migration):
    dependencies = [('models', '0004_conversation_rows_updated_in_place')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Conversation',
            name='event_position',
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='Conversation',
            name='event_floor',
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.CreateModel(
            name='ConversationEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('position', fields.BigIntField()),
                ('name', fields.CharField(max_length=32)),
                ('message_id', fields.IntField(null=True)),
                ('payload', fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
                ('skip', fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'conversation_events', 'app': 'models', 'unique_together': (('conversation', 'position'),), 'pk_attr': 'id', 'table_description': 'One logged event.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='EventLogEpoch',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('epoch', fields.CharField(max_length=64)),
            ],
            options={'table': 'event_log_epoch', 'app': 'models', 'pk_attr': 'id', 'table_description': "One row: the log's epoch."},
            bases=['Model'],
        ),
        ops.RunPython(make_epoch),
    ]
