"""Users, conversations and tokens for the benchmark, made through the project's own models and
token functions, before any server starts (outside every timed part).

Each client is its own user, with a real Argon2 password hash (one hash computed once and
stored on every row: hashing 5,000 passwords would take minutes and measure nothing the
benchmark is about), a login session and a real access token of that session signed with the
nodes' ``JWT_SECRET``.
Each database is set up in a process of its own (``build_in_subprocess``): Tortoise keeps
per-model state from the first database it was initialised with.
Conversations are ``group`` conversations with their participants, as ``POST
/api/v1/chat/sessions`` with ``kind: group`` and ``participant_ids`` makes them (the creator is
the ``owner``, the others ``member``s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

PASSWORD = "bench-password-123"
#: Rows per INSERT of a bulk create (idle-100k makes 100,000 users and participants).
BATCH = 2000


@dataclass
class Client:
    """One connection of a scenario: its user, token and conversation, and its position among
    the conversation's clients (0 is the first)."""

    user_id: int
    token: str
    conversation_id: int
    pos: int
    email: str

    def spec(self, node: int, sender: bool = False) -> dict[str, object]:
        return {"user_id": self.user_id, "token": self.token,
                "conversation_id": self.conversation_id, "pos": self.pos, "node": node,
                "sender": sender}


@dataclass
class Fixtures:
    """The clients of each scenario, by scenario name."""

    scenarios: dict[str, list[Client]] = field(default_factory=dict)


@dataclass(frozen=True)
class Shape:
    """How many clients a scenario has and how they are grouped into conversations."""

    clients: int
    per_conversation: int

    @property
    def conversations(self) -> int:
        return -(-self.clients // self.per_conversation)


async def build(database_url: str, data_dir: Path, secret: str,
                shapes: dict[str, Shape]) -> Fixtures:
    """Migrate the database, create ``max(clients)`` users and each scenario's conversations;
    return the clients with their tokens."""
    from tortoise.transactions import in_transaction

    from backend.auth.passwords import hash_password
    from backend.auth.tokens import issue_token
    from backend.settings import Settings
    from backend.storage.database import close_database, open_database
    from models import AuthSession, Conversation, ConversationKind, Participant, User

    settings = Settings.from_env({"DATA_DIR": str(data_dir), "DATABASE_URL": database_url,
                                  "JWT_SECRET": secret,
                                  "ACCESS_TOKEN_SECONDS": str(24 * 3600)})
    await open_database(settings, apply_migrations=True)
    try:
        started = time.monotonic()
        tag = uuid.uuid4().hex[:8]
        count = max((shape.clients for shape in shapes.values()), default=0)
        password_hash = hash_password(PASSWORD)
        rows = [User(email=f"bench-{tag}-{i}@example.com", username=f"bench-{tag}-{i}",
                     password_hash=password_hash, first_name="Bench", last_name=f"User{i}")
                for i in range(count)]
        async with in_transaction():
            await User.bulk_create(rows, batch_size=BATCH)
        found = dict(await User.filter(email__startswith=f"bench-{tag}-")
                     .values_list("email", "id"))
        emails = [f"bench-{tag}-{i}@example.com" for i in range(count)]
        user_ids = [int(found[email]) for email in emails]
        _said(f"{count} users", started)
        started = time.monotonic()
        # One login session per user, as a login makes: a connect checks its token's session
        # (backend/auth/sessions.py) as it does for every real client.
        session_ids = [uuid.uuid4().hex for _ in user_ids]
        async with in_transaction():
            await AuthSession.bulk_create(
                [AuthSession(id=session_id, user_id=user_id)
                 for session_id, user_id in zip(session_ids, user_ids, strict=True)],
                batch_size=BATCH)
        tokens = [issue_token(settings, user_id, "access", session_id)
                  for user_id, session_id in zip(user_ids, session_ids, strict=True)]
        _said(f"{count} login sessions and tokens", started)

        fixtures = Fixtures()
        for name, shape in shapes.items():
            started = time.monotonic()
            clients: list[Client] = []
            participants: list[Participant] = []
            # Conversations in batches too, found again by their unique titles.
            title = f"bench {name} {tag}"
            firsts = range(0, shape.clients, shape.per_conversation)
            async with in_transaction():
                await Conversation.bulk_create(
                    [Conversation(kind=ConversationKind.GROUP, title=f"{title} {first}",
                                  subject=f"bench {name} {first}",
                                  initiator_id=user_ids[first]) for first in firsts],
                    batch_size=BATCH)
                made = dict(await Conversation.filter(title__startswith=f"{title} ")
                            .values_list("title", "id"))
                for first in firsts:
                    conversation_id = int(made[f"{title} {first}"])
                    group = range(first, min(first + shape.per_conversation, shape.clients))
                    for pos, i in enumerate(group):
                        participants.append(Participant(
                            conversation_id=conversation_id, user_id=user_ids[i],
                            role="owner" if pos == 0 else "member",
                        ))
                        clients.append(Client(user_ids[i], tokens[i], conversation_id, pos,
                                              emails[i]))
                await Participant.bulk_create(participants, batch_size=BATCH)
            fixtures.scenarios[name] = clients
            _said(f"{name}: {len(firsts)} conversations, {len(participants)} participants",
                  started)
        return fixtures
    finally:
        await close_database()


def _said(what: str, started: float) -> None:
    print(f"bench: fixtures: {what} in {time.monotonic() - started:.1f} s", file=sys.stderr,
          flush=True)


def build_in_subprocess(database_url: str, data_dir: Path, secret: str,
                        shapes: dict[str, Shape]) -> Fixtures:
    """``build`` in a fresh Python process, so that each database gets a fresh Tortoise."""
    root = Path(__file__).resolve().parents[1]
    out = data_dir / "fixtures.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "bench.fixtures", "--database-url", database_url,
         # ``=``: a random secret may start with "-", which argparse would take for a flag.
         "--data-dir", str(data_dir), f"--secret={secret}",
         "--shapes", json.dumps({name: asdict(shape) for name, shape in shapes.items()}),
         "--out", str(out)],
        cwd=root, check=True,
    )
    made = json.loads(out.read_text())
    return Fixtures({name: [Client(**client) for client in clients]
                     for name, clients in made.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description="Make the benchmark's users, conversations "
                                     "and tokens; write the clients as JSON.")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--shapes", required=True, help="JSON {name: {clients, per_conversation}}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shapes = {name: Shape(**shape) for name, shape in json.loads(args.shapes).items()}
    made = asyncio.run(build(args.database_url, args.data_dir, args.secret, shapes))
    args.out.write_text(json.dumps({name: [asdict(client) for client in clients]
                                    for name, clients in made.scenarios.items()}))


if __name__ == "__main__":
    main()
