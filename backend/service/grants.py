"""Write permission on the hot path: what a send must know, kept in memory on each node.

Every send (and typing) asks: does the conversation exist, may the actor see it, is it open,
has a direct partner blocked the actor, and who must not get the message (the users who blocked
its author)? Asked of the database that is two to five queries and a ``select_related`` per
message; here they are answered from two small caches, filled on a miss and dropped when what
they hold changes:

- ``ConversationFacts`` per conversation: the row (with its device and customer; only fields
  that never change, and ``status``, are read from it) and its participants' user ids, read
  in one statement (``lookups.conversation_and_parties``). Dropped when the conversation is
  closed or its participants change.
- the blockers of each user (who blocked them), and whom each user blocked (whose messages
  their history pages leave out: every connect reads one), read together; at a connect whose
  door sends the history, with the token's user (``keep_blocks``). Dropped on block and
  unblock.

The rules themselves are those of ``access.py``, applied to the cached facts. A staff member's
reach into support conversations still asks the database for the role at every event (roles
change elsewhere, and a role taken away must take effect at once, see ``access.still_staff``).

Invalidation: on the node where the change is made, at once (after its commit); on the other
nodes through the fan-out's ``service_invalidate`` control, which travels with the events
(milliseconds; it is published before the change's own events, so a client that saw those
finds the grant gone on its node). If Redis drops that control (an outage: the outbox
discards rather than queues), an entry still lives at most ``TTL_SECONDS`` (10 s): that is the
bound of a stale grant across nodes. A change that races a load is caught by a generation
counter: a load that began before an invalidation is used once and not kept.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import TypeVar

from backend.service.access import can_view, ensure_open, ensure_unblocked
from backend.service.actors import Actor
from backend.service.errors import forbidden, not_found, valid_id
from backend.service.inbox import inbox_rooms
from backend.storage.lookups import blocks_of, conversation_and_parties
from models import Conversation, ConversationKind

#: How long an entry may be used without being reloaded when nodes share a cluster: the bound
#: of a stale grant on a node that missed an invalidation (see the module's docstring).
TTL_SECONDS = 10.0
#: The same on a single node, where every change is made here and invalidates at once: only
#: hygiene (a change made behind the service's back, by hand in the database, is seen within
#: it). Reloading the rooms benchmark's 250 conversations every 5 s cost it ~5 % of its CPU.
LOCAL_TTL_SECONDS = 300.0
#: Entries kept per cache; beyond, the oldest are dropped (reloaded on their next use).
MAX_ENTRIES = 20_000

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """What the send path knows about one conversation."""

    #: Loaded with ``device`` and ``customer``. Fields that change (counters, ``updated_at``)
    #: are stale here and never read from it; ``status`` is, and closing drops the entry.
    conversation: Conversation
    #: User ids of the active participants.
    members: frozenset[int]
    #: User ids of every participant (a direct conversation's block check uses them).
    participants: frozenset[int]
    #: The rooms whose inboxes show the conversation (``inbox.inbox_rooms``).
    inbox_rooms: tuple[str, ...]
    expires: float


class Grants:
    """The two caches of this node, and the send path's permission check over them."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._conversations: dict[int, ConversationFacts] = {}
        #: Loads under way: the generation each began in, and its outcome.
        self._loading: dict[int, tuple[int, asyncio.Future[ConversationFacts]]] = {}
        self._blockers: dict[int, tuple[frozenset[int], float]] = {}
        self._blocked: dict[int, tuple[frozenset[int], float]] = {}
        self._generation = 0

    # -- reads ------------------------------------------------------------------------------

    async def viewable(self, actor: Actor, conversation_id: int) -> ConversationFacts:
        """The conversation's facts if ``actor`` may see it: 404 if it does not exist, 403
        otherwise. Who may see a conversation is fixed when it is made (its kind, initiator,
        agent, device and participants), so the cached facts answer as the database would."""
        facts = await self.conversation(conversation_id)
        if not await can_view(actor, facts.conversation, facts.members):
            raise forbidden("You are not a participant of this conversation")
        return facts

    async def writable(self, actor: Actor, conversation_id: int) -> ConversationFacts:
        """The conversation's facts if ``actor`` may write to it now: 404 if it does not
        exist, 403 if they may not see it or a direct partner blocked them, 409 if closed."""
        facts = await self.viewable(actor, conversation_id)
        conversation = facts.conversation
        ensure_open(conversation)
        if actor.user is not None and conversation.kind == ConversationKind.DIRECT:
            others = facts.participants - {actor.user.id}
            ensure_unblocked(actor, conversation, others, await self.blockers(actor.user.id))
        return facts

    def writable_now(self, actor: Actor, conversation_id: int) -> ConversationFacts | None:
        """``writable``'s answer when the held facts give it without a query or a wait (a
        member of an open conversation, and for a direct one the actor's blockers held), else
        None: ask ``writable``. The send path's every message; no coroutine on the way."""
        user = actor.user
        facts = self._conversations.get(conversation_id)
        if (user is None or facts is None or user.id not in facts.members
                or facts.expires <= time.monotonic()):
            return None
        conversation = facts.conversation
        ensure_open(conversation)
        if conversation.kind == ConversationKind.DIRECT:
            held = self._blockers.get(user.id)
            if held is None or held[1] <= time.monotonic():
                return None
            ensure_unblocked(actor, conversation, facts.participants - {user.id}, held[0])
        return facts

    async def conversation(self, conversation_id: int) -> ConversationFacts:
        if not valid_id(conversation_id):
            raise not_found("Conversation")
        facts = self._conversations.get(conversation_id)
        if facts is not None and facts.expires > time.monotonic():
            return facts
        # One load per conversation at a time: the clients of a conversation often arrive
        # together (a reconnect after a restart), and each would load the same rows. A load
        # begun before an invalidation is not joined.
        loading = self._loading.get(conversation_id)
        if loading is None or loading[0] != self._generation:
            future = asyncio.ensure_future(self._load(conversation_id))
            loading = self._loading[conversation_id] = (self._generation, future)
            future.add_done_callback(functools.partial(self._loaded, conversation_id))
        return await asyncio.shield(loading[1])

    def _loaded(self, conversation_id: int, future: asyncio.Future[ConversationFacts]) -> None:
        if self._loading.get(conversation_id, (0, None))[1] is future:
            del self._loading[conversation_id]
        if not future.cancelled():
            future.exception()  # retrieved: a failure reaches its waiters, not the loop's log

    async def _load(self, conversation_id: int) -> ConversationFacts:
        generation = self._generation
        # The conversation, its device and customer, and who takes part: one statement.
        found = await conversation_and_parties(conversation_id)
        if found is None:
            raise not_found("Conversation")
        conversation, active, former = found
        members = frozenset(active)
        facts = ConversationFacts(conversation, members, members.union(former),
                                  inbox_rooms(conversation, members), time.monotonic() + self.ttl)
        if generation == self._generation:
            _put(self._conversations, conversation_id, facts, self.max_entries)
        return facts

    def cached(self, conversation_id: int) -> ConversationFacts | None:
        """The facts if held and fresh, without loading them."""
        facts = self._conversations.get(conversation_id)
        return facts if facts is not None and facts.expires > time.monotonic() else None

    async def blockers(self, user_id: int) -> frozenset[int]:
        """Ids of the users who blocked ``user_id``."""
        held = self._blockers.get(user_id)
        if held is not None and held[1] > time.monotonic():
            return held[0]
        return (await self._load_blocks(user_id))[1]

    async def blocked(self, user_id: int) -> frozenset[int]:
        """Ids of the users ``user_id`` blocked (whose messages they do not see)."""
        held = self._blocked.get(user_id)
        if held is not None and held[1] > time.monotonic():
            return held[0]
        return (await self._load_blocks(user_id))[0]

    async def _load_blocks(self, user_id: int) -> tuple[frozenset[int], frozenset[int]]:
        """Whom ``user_id`` blocked and who blocked them, read together and both kept: a
        connect asks for each (one round trip less on PostgreSQL)."""
        generation = self._generation
        return self.keep_blocks(user_id, *await blocks_of(user_id), generation)

    @property
    def generation(self) -> int:
        """Counts the invalidations: taken before a read whose answer ``keep_blocks`` is
        given, so that an answer a change overtook is not kept."""
        return self._generation

    def holds_blocks(self, user_id: int) -> bool:
        """Whether both of ``user_id``'s block sets are held and fresh (nothing to read)."""
        now = time.monotonic()
        blocked, blockers = self._blocked.get(user_id), self._blockers.get(user_id)
        return (blocked is not None and blocked[1] > now
                and blockers is not None and blockers[1] > now)

    def keep_blocks(self, user_id: int, blocked_ids: list[int], blocker_ids: list[int],
                    generation: int) -> tuple[frozenset[int], frozenset[int]]:
        """Whom ``user_id`` blocked and who blocked them, as read by a read begun at
        ``generation`` (``lookups.blocks_of``'s answer, or the one read with the user's row at
        a connect, ``lookups.token_user``): kept unless a change was forgotten since."""
        # Most users block no one: their entries share one empty set (a new one is 0.2 KB).
        blocked, blockers = frozenset(blocked_ids) or _NO_IDS, frozenset(blocker_ids) or _NO_IDS
        if generation == self._generation:
            expires = time.monotonic() + self.ttl
            _put(self._blocked, user_id, (blocked, expires), self.max_entries)
            _put(self._blockers, user_id, (blockers, expires), self.max_entries)
        return blocked, blockers

    async def skip_keys(self, actor: Actor) -> frozenset[str]:
        """Actor keys that must not receive what ``actor`` publishes (who blocked them)."""
        held = self.skip_keys_now(actor)
        if held is not None:
            return held
        assert actor.user is not None
        return _keys(await self.blockers(actor.user.id))

    def skip_keys_now(self, actor: Actor) -> frozenset[str] | None:
        """``skip_keys``'s answer when the actor's blockers are held, else None."""
        if actor.user is None:
            return _NO_KEYS
        held = self._blockers.get(actor.user.id)
        if held is None or held[1] <= time.monotonic():
            return None
        return _keys(held[0])

    # -- invalidation -----------------------------------------------------------------------

    def forget(self, *, conversation_id: int | None = None,
               blocked_user_id: int | None = None, blocker_user_id: int | None = None) -> None:
        """Drop what a change made stale (call after its commit)."""
        self._generation += 1
        if conversation_id is not None:
            self._conversations.pop(conversation_id, None)
        if blocked_user_id is not None:
            self._blockers.pop(blocked_user_id, None)
        if blocker_user_id is not None:
            self._blocked.pop(blocker_user_id, None)


_NO_KEYS: frozenset[str] = frozenset()
_NO_IDS: frozenset[int] = frozenset()


def _keys(blockers: frozenset[int]) -> frozenset[str]:
    """The actor keys of ``blockers`` (none, for almost everyone: no new set then)."""
    return frozenset(f"user:{i}" for i in blockers) if blockers else _NO_KEYS


def _put(cache: dict[int, V], key: int, value: V, limit: int) -> None:
    cache.pop(key, None)
    while len(cache) >= limit:
        del cache[next(iter(cache))]  # the oldest entry (dicts keep insertion order)
    cache[key] = value
