from tortoise import migrations
from tortoise.migrations import operations as ops
from models.conversations import ConnectionStatus, ConversationKind, ConversationStatus
from models.messages import MessageStatus, SenderType
from models.people import Role
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Customer',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('platform', fields.CharField(max_length=32)),
                ('external_id', fields.CharField(max_length=128)),
                ('first_name', fields.CharField(default='', max_length=150)),
                ('last_name', fields.CharField(default='', max_length=150)),
                ('username', fields.CharField(default='', max_length=150)),
                ('profile_picture', fields.CharField(default='', max_length=1024)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'customers', 'app': 'models', 'unique_together': (('platform', 'external_id'),), 'pk_attr': 'id', 'table_description': 'Someone who writes from an outside platform (Telegram, Instagram), never logging in.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MobileSession',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device_id', fields.CharField(unique=True, max_length=128)),
                ('platform', fields.CharField(default='', max_length=32)),
                ('app_version', fields.CharField(default='', max_length=32)),
                ('is_active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'mobile_sessions', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An anonymous mobile device (seed 000), known by its unguessable device id.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
                ('username', fields.CharField(unique=True, max_length=150)),
                ('password_hash', fields.CharField(max_length=255)),
                ('first_name', fields.CharField(default='', max_length=150)),
                ('last_name', fields.CharField(default='', max_length=150)),
                ('avatar_url', fields.CharField(default='', max_length=1024)),
                ('role', fields.CharEnumField(default=Role.USER, description='USER: user\nAGENT: agent\nADMIN: admin', enum_type=Role, max_length=16)),
                ('is_active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'users', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A person with an account. Agents and admins are staff.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Block',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('blocker', fields.ForeignKeyField('models.User', source_field='blocker_id', db_constraint=True, to_field='id', related_name='blocks_made', on_delete=OnDelete.CASCADE)),
                ('blocked', fields.ForeignKeyField('models.User', source_field='blocked_id', db_constraint=True, to_field='id', related_name='blocks_received', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'blocks', 'app': 'models', 'unique_together': (('blocker', 'blocked'),), 'pk_attr': 'id', 'table_description': 'The blocker receives nothing from the blocked user, who cannot write to them directly.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Connection',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('requester', fields.ForeignKeyField('models.User', source_field='requester_id', db_constraint=True, to_field='id', related_name='connections_sent', on_delete=OnDelete.CASCADE)),
                ('addressee', fields.ForeignKeyField('models.User', source_field='addressee_id', db_constraint=True, to_field='id', related_name='connections_received', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=ConnectionStatus.PENDING, description='PENDING: pending\nACCEPTED: accepted', enum_type=ConnectionStatus, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('accepted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'connections', 'app': 'models', 'unique_together': (('requester', 'addressee'),), 'pk_attr': 'id', 'table_description': 'A request from one user to another (seed 004). Accepting it opens a direct conversation.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Conversation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharEnumField(default=ConversationKind.SUPPORT, description='DIRECT: direct\nGROUP: group\nSUPPORT: support', enum_type=ConversationKind, max_length=16)),
                ('title', fields.CharField(default='', max_length=255)),
                ('subject', fields.CharField(default='', max_length=255)),
                ('status', fields.CharEnumField(default=ConversationStatus.ACTIVE, description='ACTIVE: active\nCLOSED: closed', enum_type=ConversationStatus, max_length=16)),
                ('priority', fields.IntField(default=0)),
                ('initiator', fields.ForeignKeyField('models.User', source_field='initiator_id', null=True, db_constraint=True, to_field='id', related_name='initiated', on_delete=OnDelete.SET_NULL)),
                ('assigned_agent', fields.ForeignKeyField('models.User', source_field='assigned_agent_id', null=True, db_constraint=True, to_field='id', related_name='assigned', on_delete=OnDelete.SET_NULL)),
                ('device', fields.ForeignKeyField('models.MobileSession', source_field='device_id', null=True, db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.SET_NULL)),
                ('customer', fields.ForeignKeyField('models.Customer', source_field='customer_id', null=True, db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.SET_NULL)),
                ('connection', fields.OneToOneField('models.Connection', source_field='connection_id', null=True, db_constraint=True, to_field='id', related_name='conversation', on_delete=OnDelete.SET_NULL)),
                ('last_message_id', fields.IntField(null=True)),
                ('total_messages', fields.IntField(default=0)),
                ('device_last_read_message_id', fields.IntField(default=0)),
                ('device_unread_count', fields.IntField(default=0)),
                ('staff_unread_count', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'conversations', 'app': 'models', 'indexes': [Index(fields=['status', 'updated_at']), Index(fields=['kind', 'updated_at'])], 'pk_attr': 'id', 'table_description': 'One conversation. What the seeds call a chat session or a session is this too.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Message',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('sender_type', fields.CharEnumField(description='USER: user\nMOBILE: mobile\nCUSTOMER: customer\nSYSTEM: system', enum_type=SenderType, max_length=16)),
                ('sender_key', fields.CharField(max_length=160)),
                ('sender_user', fields.ForeignKeyField('models.User', source_field='sender_user_id', null=True, db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.SET_NULL)),
                ('sender_device', fields.ForeignKeyField('models.MobileSession', source_field='sender_device_id', null=True, db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.SET_NULL)),
                ('sender_customer', fields.ForeignKeyField('models.Customer', source_field='sender_customer_id', null=True, db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.SET_NULL)),
                ('content', fields.TextField(unique=False)),
                ('message_type', fields.CharField(default='text', max_length=16)),
                ('media_url', fields.CharField(default='', max_length=2048)),
                ('file', fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
                ('parent_message_id', fields.IntField(null=True)),
                ('reply_to_id', fields.IntField(null=True)),
                ('mentions', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('metadata', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('is_urgent', fields.BooleanField(default=False)),
                ('status', fields.CharEnumField(default=MessageStatus.SENT, description='SENT: sent\nDELIVERED: delivered\nREAD: read', enum_type=MessageStatus, max_length=16)),
                ('is_edited', fields.BooleanField(default=False)),
                ('edited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('is_deleted', fields.BooleanField(default=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('client_msg_id', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'messages', 'app': 'models', 'unique_together': (('conversation', 'sender_key', 'client_msg_id'),), 'indexes': [Index(fields=['conversation_id', 'id'])], 'pk_attr': 'id', 'table_description': 'One message. Ids only grow within a conversation, so an id is a resume point.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Participant',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='participants', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='participations', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharField(default='user', max_length=16)),
                ('joined_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('is_active', fields.BooleanField(default=True)),
                ('last_read_message_id', fields.IntField(default=0)),
                ('last_read_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('unread_count', fields.IntField(default=0)),
            ],
            options={'table': 'participants', 'app': 'models', 'unique_together': (('conversation', 'user'),), 'indexes': [Index(fields=['user_id', 'is_active'])], 'pk_attr': 'id', 'table_description': 'The membership of a user in a conversation, with their read position.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Reaction',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('message', fields.ForeignKeyField('models.Message', source_field='message_id', db_constraint=True, to_field='id', related_name='reactions', on_delete=OnDelete.CASCADE)),
                ('reactor_key', fields.CharField(max_length=160)),
                ('emoji', fields.CharField(max_length=32)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'reactions', 'app': 'models', 'unique_together': (('message', 'reactor_key', 'emoji'),), 'pk_attr': 'id', 'table_description': 'One emoji from one reactor on one message. Sending it again removes it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Receipt',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('message', fields.ForeignKeyField('models.Message', source_field='message_id', db_constraint=True, to_field='id', related_name='receipts', on_delete=OnDelete.CASCADE)),
                ('reader_key', fields.CharField(max_length=160)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('read_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'receipts', 'app': 'models', 'unique_together': (('message', 'reader_key'),), 'pk_attr': 'id', 'table_description': 'When one reader got and read one message.'},
            bases=['Model'],
        ),
    ]
