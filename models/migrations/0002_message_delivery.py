from tortoise import migrations
from tortoise.migrations import operations as ops
from models.messages import DeliveryStatus
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Message',
            name='delivery_error',
            field=fields.CharField(default='', db_default='', max_length=255),
        ),
        ops.AddField(
            model_name='Message',
            name='delivery_status',
            field=fields.CharEnumField(default=DeliveryStatus.NONE, description='NONE: none\nPENDING: pending\nSENT: sent\nFAILED: failed', db_default='none', enum_type=DeliveryStatus, max_length=16),
        ),
        ops.AddField(
            model_name='Message',
            name='external_id',
            field=fields.CharField(null=True, max_length=255),
        ),
    ]
