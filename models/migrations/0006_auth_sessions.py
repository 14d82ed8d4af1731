"""Login sessions (``auth_sessions``) and the moment a user's tokens without a session were
revoked (``users.legacy_tokens_revoked_at``): what a logout revokes (backend/auth/sessions.py).

Numbered 0006 and depending on 0004 only: 0005 is being written alongside it.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_conversation_event_log')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AuthSession',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_index=True, db_constraint=True, to_field='id', related_name='auth_sessions', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('refreshed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'auth_sessions', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A login: the access and refresh tokens issued together, and those refreshed from them, carry its id.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='User',
            name='legacy_tokens_revoked_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
