"""The support desk's audit trail (``conversation_audit``, models/audit.py).

A new table only: the statuses seed 001 adds to ``conversations.status`` (``support_active``,
``marketing_active``) fit its 16 characters and need no change of the column (and no remake of
the SQLite table).
"""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

from models.audit import AuditAction


class Migration(migrations.Migration):
    dependencies = [('models', '0006_auth_sessions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ConversationAudit',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_index=True, db_constraint=True, to_field='id', related_name='audit_entries', on_delete=OnDelete.CASCADE)),
                ('actor', fields.ForeignKeyField('models.User', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='audit_entries', on_delete=OnDelete.SET_NULL)),
                ('action', fields.CharEnumField(description='ASSIGNED: assigned\nTRANSFERRED: transferred\nUNASSIGNED: unassigned\nSTATUS: status\nREOPENED: reopened\nPRIORITY: priority\nTITLE: title', enum_type=AuditAction, max_length=16)),
                ('from_value', fields.CharField(null=True, max_length=255)),
                ('to_value', fields.CharField(null=True, max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'conversation_audit', 'app': 'models', 'pk_attr': 'id', 'table_description': "One change, written in the transaction that makes it."},
            bases=['Model'],
        ),
    ]
