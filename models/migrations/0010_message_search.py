"""Full-text search over messages' content, in each database's own engine.

SQLite: ``message_search``, an FTS5 table whose content is ``messages.content`` (external
content: the text is stored once), kept in step by triggers on insert, update of the content
and delete, so the index changes in the transaction of the send, edit or delete that changes
the text. A deleted message's content is emptied (backend/service/messages.py), which takes it
out of the index too. Tokens: unicode61 with diacritics removed (``café`` finds ``cafe``).

PostgreSQL: ``messages.search_vector``, ``to_tsvector('simple', content)``, set by a trigger
only when the content is written (not on the receipts' status updates, which stay HOT), with
a GIN index. A plain column filled by a trigger rather than a generated one: PostgreSQL
recomputes stored generated columns on every update of the row. The Tortoise model does not
name either; backend/storage/search.py is their only reader.

Both are filled from the messages already there.
"""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

SQLITE = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS \"message_search\" USING fts5(content, "
    "content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    'CREATE TRIGGER IF NOT EXISTS "message_search_insert" AFTER INSERT ON "messages" BEGIN '
    'INSERT INTO "message_search" ("rowid", "content") VALUES (new."id", new."content"); END',
    'CREATE TRIGGER IF NOT EXISTS "message_search_delete" AFTER DELETE ON "messages" BEGIN '
    'INSERT INTO "message_search" ("message_search", "rowid", "content") '
    "VALUES ('delete', old.\"id\", old.\"content\"); END",
    'CREATE TRIGGER IF NOT EXISTS "message_search_update" AFTER UPDATE OF "content" '
    'ON "messages" WHEN old."content" IS NOT new."content" BEGIN '
    'INSERT INTO "message_search" ("message_search", "rowid", "content") '
    "VALUES ('delete', old.\"id\", old.\"content\"); "
    'INSERT INTO "message_search" ("rowid", "content") VALUES (new."id", new."content"); END',
    "INSERT INTO \"message_search\" (\"message_search\") VALUES ('rebuild')",
]

POSTGRES = [
    'ALTER TABLE "messages" ADD COLUMN IF NOT EXISTS "search_vector" tsvector',
    'CREATE OR REPLACE FUNCTION "message_search_vector"() RETURNS trigger LANGUAGE plpgsql AS '
    "$$ BEGIN NEW.\"search_vector\" := to_tsvector('simple', NEW.\"content\"); RETURN NEW; "
    "END $$",
    'DROP TRIGGER IF EXISTS "message_search_vector" ON "messages"',
    'CREATE TRIGGER "message_search_vector" BEFORE INSERT OR UPDATE OF "content" '
    'ON "messages" FOR EACH ROW EXECUTE FUNCTION "message_search_vector"()',
    'UPDATE "messages" SET "search_vector" = to_tsvector(\'simple\', "content")',
    'CREATE INDEX IF NOT EXISTS "messages_search_vector" ON "messages" '
    'USING GIN ("search_vector")',
]


async def create_search(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    statements = POSTGRES if client.capabilities.dialect == "postgres" else SQLITE
    for statement in statements:
        await client.execute_script(statement)


class Migration(migrations.Migration):
    dependencies = [('models', '0009_outbox_push_webhooks')]

    initial = False

    operations = [
        ops.RunPython(create_search),
    ]
