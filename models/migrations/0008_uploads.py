"""Uploaded files (``uploads``): who sent each, what it holds, where it is kept, and the
conversation and message that name it once attached (docs/files.md).

A new table only: nothing existing is altered or remade.
"""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops

from models.uploads import UploadState


class Migration(migrations.Migration):
    dependencies = [('models', '0007_conversation_audit')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Upload',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('owner_key', fields.CharField(max_length=160)),
                ('name', fields.CharField(max_length=255)),
                ('size', fields.BigIntField()),
                ('received', fields.BigIntField(default=0)),
                ('content_type', fields.CharField(default='', max_length=255)),
                ('sha256', fields.CharField(default='', max_length=64)),
                ('state', fields.CharEnumField(description='RECEIVING: receiving\nREADY: ready\nATTACHED: attached\nDELETED: deleted', enum_type=UploadState, max_length=16)),
                ('storage_key', fields.CharField(default='', max_length=255)),
                ('thumbnail_key', fields.CharField(null=True, max_length=255)),
                ('parts', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', null=True, db_constraint=True, to_field='id', related_name='uploads', on_delete=OnDelete.CASCADE)),
                ('message', fields.ForeignKeyField('models.Message', source_field='message_id', null=True, db_constraint=True, to_field='id', related_name='uploads', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'uploads', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One uploaded file.'},
            bases=['Model'],
        ),
    ]
