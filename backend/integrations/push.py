"""Push notifications for users with no live socket (CONTRACT section 11): their
subscriptions, their mutes, and who gets a notification when a message is sent.

A support conversation assigned to an agent by someone else notifies that agent the same
way, when they have no live socket (a desk change's logged ``conversation_updated``), and so
does a user added to a group by someone else (``member_added``).

When a ``chat_message`` is published, the recipients are the conversation's members (and a
support conversation's initiator and assigned agent), less its author, less those who blocked
the author (the event's ``skip_actors``, as for the live event), less those who muted the
conversation, less those with a live socket on any node (the cluster's presence). Of those,
each user gets at most one notification per conversation every ``PUSH_MIN_INTERVAL_SECONDS``
(a mention always goes through) and ``PUSH_PER_USER_PER_MINUTE`` in all, counted on the node
that published the message. One notification goes to each of their devices, collapsed per
conversation (Web Push ``Topic``, FCM ``collapse_key`` / ``apns-collapse-id``): a device shows
the latest only. Only users with a subscription are looked at: each node keeps their ids in
memory (reloaded every ``REFRESH_SECONDS``), so a message to users without one costs a set
look-up and no query.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pywebpush import WebPusher

from backend.integrations.netguard import RefusedAddress, check_target
from backend.integrations.outbox import NewDelivery
from backend.observability.metrics import Metrics
from backend.service import access
from backend.service.actors import Actor
from backend.service.errors import ChatError, invalid, not_found
from backend.service.events import Event
from backend.settings import Delivery
from backend.storage.columns import int_column
from models import ConversationMute, OutboxKind, PushKind, PushSubscription

if TYPE_CHECKING:
    from backend.service.chat import ChatService

log = logging.getLogger("confab.push")

#: "Does this actor key have a live socket on any node?" (the real-time presence).
Online = Callable[[str], Awaitable[bool]]
Enqueue = Callable[[list[NewDelivery]], Awaitable[None]]
REFRESH_SECONDS = 5.0
#: Devices one user keeps at most: a new one past it replaces their oldest (each device is
#: a delivery per message, so the count is bounded as any per-user cost is).
MAX_SUBSCRIPTIONS_PER_USER = 20
#: Characters of the message shown in a notification.
PREVIEW_CHARS = 140


def topic(conversation_id: int) -> str:
    """The collapse key of a conversation's notifications (Web Push's ``Topic``: at most 32
    characters of the URL-safe base64 alphabet)."""
    return f"conversation-{conversation_id}"


class Push:
    """Subscriptions, mutes and the planning of notifications on one node."""

    def __init__(self, config: Delivery, metrics: Metrics, enqueue: Enqueue, *, webpush: bool,
                 fcm: bool) -> None:
        self.config = config
        self.metrics = metrics
        self.enqueue = enqueue
        self.kinds = {kind for kind, on in ((PushKind.WEBPUSH, webpush), (PushKind.FCM, fcm))
                      if on}
        self.chat: ChatService | None = None
        self.online: Online | None = None
        #: Users with a subscription of a kind this node sends (``kinds``).
        self.users: set[int] = set()
        self._last: dict[tuple[int, int], float] = {}
        self._recent: dict[int, deque[float]] = {}
        self.tasks: set[asyncio.Future[None]] = set()

    def attach(self, chat: ChatService, online: Online) -> None:
        """The service whose conversations are read, and the cluster's presence."""
        self.chat = chat
        self.online = online

    # -- subscriptions and mutes ------------------------------------------------------------

    async def subscribe(self, actor: Actor, kind: str, *, endpoint: str | None,
                        keys: dict[str, str] | None, token: str | None) -> dict[str, Any]:
        """Add (or take over) a device of the caller: a Web Push subscription or an FCM
        token. The same endpoint or token subscribing again keeps its id. A kind this server
        is not configured for is kept all the same (the app registers what it has): nothing
        is sent to it until the server is (``kinds``)."""
        user = _user(actor)
        push_kind = PushKind(kind)
        fields: dict[str, Any]
        if push_kind == PushKind.WEBPUSH:
            if not endpoint or not keys or not keys.get("p256dh") or not keys.get("auth"):
                raise invalid("a webpush subscription needs endpoint and keys {p256dh, auth}")
            info = {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"],
                                                   "auth": keys["auth"]}}
            try:
                WebPusher(info)  # decodes the keys: a broken one is refused now
            except Exception:
                raise invalid("keys.p256dh and keys.auth must be the browser's keys") from None
            try:
                await check_target(endpoint, allow_private=self.config.allow_private_networks)
            except RefusedAddress as exc:
                raise invalid(f"endpoint refused: {exc}") from None
            fields = {"endpoint": endpoint, "p256dh": keys["p256dh"], "auth": keys["auth"]}
            identity = endpoint
        else:
            if not token:
                raise invalid("an fcm subscription needs token")
            fields, identity = {"token": token}, token
        key = hashlib.sha256(f"{push_kind.value}\n{identity}".encode()).hexdigest()
        row, _ = await PushSubscription.update_or_create(
            key=key, defaults={"user_id": user, "kind": push_kind,
                               "session_id": actor.session_id, **fields})
        beyond = await int_column(PushSubscription.filter(user_id=user).order_by("-id").offset(
            MAX_SUBSCRIPTIONS_PER_USER), "id")
        if beyond:
            await PushSubscription.filter(id__in=beyond).delete()
        if push_kind in self.kinds:  # one of a kind not sent to is no reason to plan
            self.users.add(user)
        return {"id": row.id, "kind": push_kind.value}

    async def subscriptions(self, actor: Actor) -> list[dict[str, Any]]:
        """The caller's devices."""
        rows = await PushSubscription.filter(user_id=_user(actor)).order_by("id")
        return [{"id": r.id, "kind": r.kind.value, "endpoint": r.endpoint or None,
                 "created_at": r.created_at.isoformat() if r.created_at else None}
                for r in rows]

    async def unsubscribe(self, actor: Actor, subscription_id: int) -> dict[str, Any]:
        """Remove one of the caller's devices."""
        if not await PushSubscription.filter(id=subscription_id, user_id=_user(actor)).delete():
            raise not_found("Push subscription")
        return {"id": subscription_id, "deleted": True}

    async def mute(self, actor: Actor, conversation_id: int, muted: bool) -> dict[str, Any]:
        """Stop (or start again) the caller's notifications from a conversation they see."""
        user = _user(actor)
        await access.visible_conversation(actor, conversation_id)
        if muted:
            await ConversationMute.get_or_create(user_id=user, conversation_id=conversation_id)
        else:
            await ConversationMute.filter(user_id=user, conversation_id=conversation_id).delete()
        return {"conversation_id": conversation_id, "muted": muted}

    async def reload(self) -> None:
        """Read again which users have a subscription of a kind this node sends (added or
        removed on other nodes)."""
        self.users = set(await int_column(PushSubscription.filter(
            kind__in=list(self.kinds)).distinct(), "user_id"))

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.reload()
            except Exception as exc:  # the database away: keep what is known
                log.warning("push subscribers not reloaded (%s: %s)", type(exc).__name__,
                            str(exc)[:200])
            await asyncio.sleep(REFRESH_SECONDS)

    # -- planning ---------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """An event was published: a message may call for notifications (in the
        background; nothing at all while no user has a subscription)."""
        if not self.users or not self.kinds:
            return
        if event.name == "chat_message":
            plan = self._plan(event)
        elif (assignee := _assigned_to(event)) is not None and assignee in self.users:
            title = str(event.payload["conversation"].get("title") or "")
            plan = self._plan_personal(event, assignee, "Assigned to you", title,
                                       {"assignment": True})
        elif (added := _added_to(event)) is not None and added in self.users:
            plan = self._plan_personal(event, added, "Added to a group", None, {"added": True})
        else:
            return
        task = asyncio.ensure_future(plan)
        self.tasks.add(task)
        task.add_done_callback(self._planned)

    def _planned(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("push notifications not planned (lost)", exc_info=task.exception())

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _plan(self, event: Event) -> None:
        assert self.chat is not None and self.online is not None, "attach() first"
        message: dict[str, Any] = event.payload["message"]
        cid = int(event.payload["conversation_id"])
        facts = await self.chat.grants.conversation(cid)
        conversation = facts.conversation
        candidates = set(facts.members)
        for extra in (conversation.initiator_id, conversation.assigned_agent_id):
            if extra is not None:
                candidates.add(extra)
        if message.get("sender_type") == "user":
            candidates.discard(message.get("sender_id"))
        blocked = {int(key[5:]) for key in event.skip_actors if key.startswith("user:")}
        candidates = (candidates - blocked) & self.users
        if not candidates:
            return
        muted = set(await int_column(ConversationMute.filter(
            conversation_id=cid, user_id__in=candidates), "user_id"))
        mentioned = {m for m in message.get("mentions") or () if isinstance(m, int)}
        chosen = []
        for _ in muted:
            self.metrics.push_decided("muted")
        for user_id in sorted(candidates - muted):
            if await self.online(f"user:{user_id}"):
                self.metrics.push_decided("online")
                continue
            outcome = self._allowed(user_id, cid, mentioned=user_id in mentioned)
            self.metrics.push_decided(outcome)
            if outcome == "queued":
                chosen.append(user_id)
        if not chosen:
            return
        subscriptions = await PushSubscription.filter(user_id__in=chosen,
                                                      kind__in=list(self.kinds))
        position = event.position if event.position is not None else message.get("id")
        rows = [NewDelivery(
            OutboxKind(sub.kind.value), sub.id, f"push_{cid}_{position}", "chat_message",
            notification(conversation.title, message, mentioned=sub.user_id in mentioned))
            for sub in subscriptions]
        await self.enqueue(rows)

    async def _plan_personal(self, event: Event, user_id: int, headline: str,
                             title: str | None, flags: dict[str, bool]) -> None:
        """An event that asks for ``user_id`` by name (a support conversation assigned to
        them, a group they were added to, by someone else): one notification when they have
        no live socket, unless muted; not collapsed, like a mention. ``title``: the
        conversation's, None to read it."""
        assert self.chat is not None and self.online is not None, "attach() first"
        cid = int(event.payload["conversation_id"])
        if await ConversationMute.exists(conversation_id=cid, user_id=user_id):
            self.metrics.push_decided("muted")
            return
        if await self.online(f"user:{user_id}"):
            self.metrics.push_decided("online")
            return
        outcome = self._allowed(user_id, cid, mentioned=True)
        self.metrics.push_decided(outcome)
        if outcome != "queued":
            return
        if title is None:
            title = (await self.chat.grants.conversation(cid)).conversation.title or ""
        body = {"title": headline, "body": title or f"Conversation {cid}",
                "conversation_id": cid, "conversation_title": title, "message_id": None,
                "topic": topic(cid), "mention": False, "assignment": False, "added": False,
                **flags}
        subscriptions = await PushSubscription.filter(user_id=user_id,
                                                      kind__in=list(self.kinds))
        await self.enqueue([NewDelivery(
            OutboxKind(sub.kind.value), sub.id, f"push_{cid}_{event.position}",
            event.name, body) for sub in subscriptions])

    def _allowed(self, user_id: int, conversation_id: int, *, mentioned: bool) -> str:
        """The per-user limits: one per conversation per interval (a mention excepted),
        and so many a minute. Returns ``queued``, ``collapsed`` or ``rate_limited``."""
        now = time.monotonic()
        last = self._last.get((user_id, conversation_id))
        if (not mentioned and last is not None
                and now - last < self.config.push_min_interval_seconds):
            return "collapsed"
        recent = self._recent.setdefault(user_id, deque())
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        if len(recent) >= self.config.push_per_user_per_minute:
            return "rate_limited"
        recent.append(now)
        self._last[(user_id, conversation_id)] = now
        if len(self._last) > 100_000:  # forget the oldest half: they are past the interval
            for key in list(self._last)[:50_000]:
                del self._last[key]
        return "queued"


def _assigned_to(event: Event) -> int | None:
    """The agent a desk change assigned the conversation to, when someone else made it (the
    logged ``conversation_updated`` names its ``changes``); None otherwise."""
    if event.name != "conversation_updated" or event.position is None:
        return None
    change = event.payload.get("changes", {}).get("assigned_agent_id")
    agent_id = change.get("to") if isinstance(change, dict) else None
    if not isinstance(agent_id, int) or agent_id == event.payload.get("user_id"):
        return None
    return agent_id


def _added_to(event: Event) -> int | None:
    """The user a logged ``member_added`` made a member of a group, when someone else added
    them (not an ownership handed over by an owner who left); None otherwise."""
    if event.name != "member_added" or event.position is None:
        return None
    user_id, by = event.payload.get("user_id"), event.payload.get("by_user_id")
    if not isinstance(user_id, int) or by in (None, user_id) or event.payload.get(
            "role") == "owner":
        return None
    return user_id


def notification(title: str, message: dict[str, Any], *, mentioned: bool) -> dict[str, Any]:
    """What a device shows: the author, a preview, where it leads."""
    content = str(message.get("content") or "")
    if not content:
        content = "Sent a file" if message.get("file") or message.get("media_url") else ""
    if len(content) > PREVIEW_CHARS:
        content = content[:PREVIEW_CHARS - 1] + "…"
    cid = int(message["conversation_id"])
    return {"title": str(message.get("sender_name") or title or "New message"),
            "body": content, "conversation_id": cid, "conversation_title": title,
            "message_id": message.get("id"), "topic": topic(cid), "mention": mentioned}


def _user(actor: Actor) -> int:
    if actor.user_id is None:
        raise ChatError("forbidden", "Only users have push subscriptions", 403)
    return actor.user_id
