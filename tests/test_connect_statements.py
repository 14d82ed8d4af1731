"""The statements a first connect runs, on each door and each database: a client whose login
session this node has not seen, to a conversation whose facts it does not hold, by a user whose
blocks it does not hold. On PostgreSQL each statement is a round trip through the pool: merged
reads must stay merged.

The real app in this process (uvicorn serving it), so that its statements can be counted as
Tortoise's clients and the connect's reads log them (``Statements``); only those run for the
connect are counted (their log records carry its request id), not the node's chores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import uvicorn
import websockets

from backend.app import create_app
from backend.auth.tokens import issue_pair
from backend.observability.context import REQUEST_ID
from backend.settings import Settings
from models import (
    AuthSession,
    Conversation,
    Message,
    Participant,
    Reaction,
    Receipt,
    SenderType,
    User,
)
from tests.support.in_process import fresh_tortoise
from tests.support.statements import listening


class ConnectStatements(logging.Handler):
    """Keeps the text of each statement logged within a request (a connect's upgrade)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sql: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if REQUEST_ID.get() is not None:  # logged in the context of the statement's caller
            self.sql.append(record.getMessage())


@pytest.fixture
def statements() -> Iterator[ConnectStatements]:
    with listening(ConnectStatements()) as handler:
        yield handler


@pytest.fixture
async def node(database_url: str, work_dir: Path) -> AsyncIterator[tuple[str, Settings]]:
    """The app on ``database_url`` served in this process: its ``ws://`` base and settings."""
    fresh_tortoise()
    data_dir = work_dir / f"node-{uuid.uuid4().hex[:8]}"
    data_dir.mkdir()
    settings = Settings.from_env({"DATABASE_URL": database_url, "JWT_SECRET": "s" * 40,
                                  "DATA_DIR": str(data_dir)})
    server = uvicorn.Server(uvicorn.Config(
        app=create_app(settings), lifespan="on", log_level="warning",
        ws="backend.realtime.protocol:WebSocketProtocol", ws_per_message_deflate=False))
    listener = socket.create_server(("127.0.0.1", 0))
    running = asyncio.ensure_future(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not running.done(), running.exception()
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}", settings
    finally:
        server.should_exit = True
        await running


async def first_connect_setup(settings: Settings) -> tuple[str, int]:
    """A user's access token of a session made behind the node's back (not remembered
    there), and a conversation of theirs with a message from its other participant, with
    reactions, read once."""
    tag = uuid.uuid4().hex[:8]
    reader, writer = [await User.create(email=f"{tag}-{n}@example.com", username=f"{tag}-{n}",
                                        password_hash="x") for n in range(2)]
    conversation = await Conversation.create(kind="group", title="g", initiator=writer)
    for user in (writer, reader):
        await Participant.create(conversation=conversation, user=user)
    message = await Message.create(conversation=conversation, sender_type=SenderType.USER,
                                   sender_key=f"user:{writer.id}", sender_user=writer,
                                   content="hello")
    for emoji, who in (("👍", writer), ("🎉", reader), ("👍", reader)):
        await Reaction.create(message=message, reactor_key=f"user:{who.id}", emoji=emoji)
    await Receipt.create(message=message, reader_key=f"user:{reader.id}",
                         read_at=datetime.now(UTC))
    await Receipt.create(message=message, reader_key=f"user:{writer.id}")  # delivered only
    session_id = uuid.uuid4().hex
    await AuthSession.create(id=session_id, user_id=reader.id)
    return issue_pair(settings, reader.id, session_id).access_token, conversation.id


async def raw_connect(base: str, token: str, conversation_id: int) -> None:
    """``/ws/chat/``: ready at its history page; then a frame the node answers only once the
    welcome is over (an unknown type's error)."""
    async with websockets.connect(f"{base}/ws/chat/{conversation_id}/?token={token}") as ws:
        while not (frame := json.loads(await ws.recv()))["type"] == "recent_messages":
            pass
        shown, = frame["messages"]
        assert (shown["content"], shown["read_by_count"]) == ("hello", 1)
        assert shown["reactions"] == {"👍": [shown["sender_id"], ANY], "🎉": [ANY]}
        assert shown["reactions"]["👍"][1] == shown["reactions"]["🎉"][0] != shown["sender_id"]
        await ws.send(json.dumps({"type": "no_such_frame"}))
        while json.loads(await ws.recv())["type"] != "error":
            pass


async def socketio_connect(base: str, token: str, conversation_id: int) -> None:
    """``/chat`` with the conversation at connect: ready at its own ``user_joined``; then an
    event the node acks once the connect's work is over (an unknown one's refusal)."""
    async with websockets.connect(f"{base}/socket.io/?EIO=4&transport=websocket") as ws:
        auth = {"token": token, "conversation_id": conversation_id}
        while True:
            text: Any = await ws.recv()
            if text.startswith("0{"):
                await ws.send(f"40/chat,{json.dumps(auth)}")
            elif text.startswith(("44/chat,", '42/chat,["error"')):
                raise AssertionError(text)
            elif text.startswith('42/chat,["user_joined"'):
                break
        await ws.send('42/chat,7["no_such_event",{}]')
        while not (text := await ws.recv()).startswith("43/chat,7"):
            pass
        assert json.loads(text[len("43/chat,7"):])[0]["error"]["code"] == "unknown_event"


#: Statements per first connect, whatever the database: the user with the token's session
#: (and on raw ``/ws/chat/``, whose welcome sends the history, the user's blocks); the
#: conversation with its device, customer and participants; raw ``/ws/chat/`` then reads the
#: history page (its messages; their senders; their reactions with their read counts).
EXPECTED = {"raw": 5, "socketio": 2}


@pytest.mark.parametrize("door", ["raw", "socketio"])
async def test_a_first_connect_runs_its_statements_and_no_more(
        node: tuple[str, Settings], statements: ConnectStatements, door: str) -> None:
    base, settings = node
    token, conversation_id = await first_connect_setup(settings)
    statements.sql.clear()
    await (raw_connect if door == "raw" else socketio_connect)(base, token, conversation_id)
    issued = statements.sql
    assert len(issued) == EXPECTED[door], "\n".join(issued)
    assert 'JOIN "auth_sessions"' in issued[0], issued[0]  # the session read with the user
    assert ('"blocks"' in issued[0]) == (door == "raw"), issued[0]  # and the blocks
    assert '"participants"' in issued[1], issued[1]  # the participants with the conversation
