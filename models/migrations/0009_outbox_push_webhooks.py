"""The durable outbox (``outbox``), outgoing webhook endpoints (``webhook_endpoints``), push
subscriptions (``push_subscriptions``) and per-conversation mutes (``conversation_mutes``).

New tables only: nothing that exists is altered.
"""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.outbox import OutboxKind, OutboxStatus
from models.push import PushKind


class Migration(migrations.Migration):
    dependencies = [('models', '0008_uploads')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OutboxItem',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharEnumField(description='WEBHOOK: webhook\nWEBPUSH: webpush\nFCM: fcm', enum_type=OutboxKind, max_length=16)),
                ('target_id', fields.IntField(description="The webhook endpoint's or the push subscription's id.")),
                ('event_id', fields.CharField(max_length=64)),
                ('event', fields.CharField(max_length=32)),
                ('payload', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ('status', fields.CharEnumField(default=OutboxStatus.PENDING, description='PENDING: pending\nDONE: done\nDEAD: dead', enum_type=OutboxStatus, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('due_ms', fields.BigIntField(description='When the row may next be tried (ms since the epoch).')),
                ('lease_ms', fields.BigIntField(null=True, description='A node claimed it until then, and past it another node may take it (its claimer died).')),
                ('claimed_by', fields.CharField(null=True, max_length=64)),
                ('last_error', fields.CharField(default='', max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbox', 'app': 'models', 'unique_together': (('kind', 'target_id', 'event_id'),), 'indexes': [Index(fields=['status', 'due_ms'])], 'pk_attr': 'id', 'table_description': 'One delivery to the outside.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookEndpoint',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('url', fields.CharField(max_length=2048)),
                ('events', fields.JSONField(description='Event names, as the Socket.IO events (``chat_message``, ``message_edit``, ...).', encoder=JSON_DUMPS, decoder=loads)),
                ('secret', fields.CharField(max_length=128)),
                ('is_active', fields.BooleanField(default=True)),
                ('log_cursor', fields.BigIntField(default=0, description='The id of the last event-log row the catch-up has looked at for this endpoint')),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='webhook_endpoints', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'webhook_endpoints', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One registered receiver.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PushSubscription',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_index=True, db_constraint=True, to_field='id', related_name='push_subscriptions', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='WEBPUSH: webpush\nFCM: fcm', enum_type=PushKind, max_length=16)),
                ('key', fields.CharField(unique=True, max_length=64)),
                ('endpoint', fields.CharField(default='', max_length=2048)),
                ('p256dh', fields.CharField(default='', max_length=255)),
                ('auth', fields.CharField(default='', max_length=255)),
                ('token', fields.CharField(default='', max_length=4096)),
                ('session_id', fields.CharField(null=True, description='The login session it was made in: a logout of that session removes it.', max_length=32)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'push_subscriptions', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One device of a user. ``key`` is a digest of the endpoint (Web Push) or the token'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConversationMute',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='mutes', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='mutes', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'conversation_mutes', 'app': 'models', 'unique_together': (('user', 'conversation'),), 'pk_attr': 'id', 'table_description': 'A user wants no push notification from one conversation.'},
            bases=['Model'],
        ),
    ]
