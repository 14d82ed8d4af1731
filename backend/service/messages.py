"""Message operations: send, history, status, edit, delete, react, typing."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from backend.service import events
from backend.service.access import (
    visible_conversation,
)
from backend.service.actors import Actor
from backend.service.clock import iso, now
from backend.service.drafts import Draft, MessageDraft, PlainDraft, check_content, parse_draft
from backend.service.errors import ChatError, forbidden, invalid, not_found, valid_id
from backend.service.events import Event
from backend.service.latest_pages import Page, Recent
from backend.service.limits import TokenBucket
from backend.service.resume import LogOps
from backend.service.serializers import message_dict
from backend.service.uploads import Uploads
from backend.storage.message_pages import (
    latest_page,
    message_page,
    reactions_and_read_counts,
)
from backend.storage.sends import Counters, SentMessage, insert_message
from models import (
    Conversation,
    ConversationKind,
    Customer,
    Message,
    MessageStatus,
    Reaction,
    Receipt,
    Role,
    SenderType,
)

_STATUS_ORDER = {MessageStatus.SENT: 0, MessageStatus.DELIVERED: 1, MessageStatus.READ: 2}
_RELATIONS = ("sender_user", "sender_device", "sender_customer")

#: ``hook(conversation, message, actor)`` runs once per new message, after commit and before it
#: is serialized and broadcast. It must not block (it schedules its work). Outside-platform
#: delivery registers one (backend/integrations), so the service imports no platform. The
#: conversation is the send path's cached row (with its customer and device): read only what
#: does not change. The message is a ``SentMessage`` (the attributes of ``models.Message``).
SentHook = Callable[[Conversation, SentMessage, Actor], None]


class MessageOps(LogOps):
    """Mixin of ChatService: everything about single messages."""

    sent_hooks: tuple[SentHook, ...] = ()
    #: The relations a rendered message needs loaded.
    RELATIONS = _RELATIONS

    def on_message_sent(self, hook: SentHook) -> None:
        """Register ``hook`` (see ``SentHook``)."""
        self.sent_hooks = (*self.sent_hooks, hook)

    async def send_message(
        self,
        actor: Actor,
        conversation_id: int,
        data: dict[str, Any] | Draft,
        *,
        rate: TokenBucket | None = None,
        origin: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Store and broadcast a message. Returns (message, created); ``created`` is False when
        ``client_msg_id`` matched an earlier send, which is returned and not broadcast again.
        ``origin`` names the sending connection (see ``Event.origin``).

        The path to keep short: permission from memory (``grants.py``), one database job
        (backend/storage/sends.py), the payload built from the values inserted, one emit. Under the
        conversation's lock from the insert to the emit, so that this node publishes a
        conversation's messages in id order (``ordering.py``)."""
        draft = (data if isinstance(data, MessageDraft | PlainDraft)
                 else parse_draft(data, self.limits))
        grants = self.grants
        facts = (grants.writable_now(actor, conversation_id)
                 or await grants.writable(actor, conversation_id))
        conversation = facts.conversation
        if draft.client_msg_id is not None:
            earlier = await self._earlier_send(actor, conversation.id, draft.client_msg_id)
            if earlier is not None:
                return earlier, False
        if rate is not None:
            rate.take()
        if draft.parent_message_id is not None or draft.reply_to_id is not None:
            await self._check_references(conversation.id, draft)
        content, message_type = draft.content, draft.message_type
        media_url = draft.media_url or (draft.file.url if draft.file else "")
        file = draft.file.model_dump() if draft.file else None
        upload = None
        if draft.upload_id is not None:  # the only extra queries, for a message with a file
            upload = await self._uploads().claim(actor, draft.upload_id, conversation.id)
            file, media_url, content = Uploads.attachment(upload), "", content or upload.name
            if message_type == "text":
                message_type = "image" if upload.content_type.startswith("image/") else "file"
        skip = grants.skip_keys_now(actor)
        if skip is None:
            skip = await grants.skip_keys(actor)
        counters = Counters(
            bump_device=actor.device is None,
            staff=("keep" if conversation.kind != ConversationKind.SUPPORT
                   else "reset" if actor.is_staff else "bump"),
            sender_member=(actor.user.id if actor.user is not None
                           and actor.user.id in facts.participants else None),
        )
        async with self.sequencer.hold(conversation.id):
            message = SentMessage(
                id=0,
                conversation_id=conversation.id,
                sender_type=actor.kind,
                sender_key=actor.key,
                sender_user=actor.user,
                sender_device=actor.device,
                sender_customer=actor.customer,
                content=content,
                message_type=message_type,
                media_url=media_url,
                file=file,
                parent_message_id=draft.parent_message_id,
                reply_to_id=draft.reply_to_id,
                mentions=draft.mentions,
                metadata=draft.metadata,
                is_urgent=draft.is_urgent,
                client_msg_id=draft.client_msg_id,
                created_at=now(),  # under the hold: stamped in id order too
                skip=tuple(skip),
            )
            try:
                message.id = await (insert_message(message, counters) if upload is None
                                    else self._insert_claimed(message, counters, upload.id))
            except IntegrityError:
                # A concurrent retry with the same client_msg_id won the race: return its
                # message.
                earlier = await self._earlier_send(actor, conversation.id, draft.client_msg_id)
                if earlier is None:
                    raise
                return earlier, False
            for hook in self.sent_hooks:
                hook(conversation, message, actor)
            payload = message_dict(message, customer=actor.customer or conversation.customer)
            if upload is not None:
                self._show_file(payload, file)
            await self.sink.publish(
                events.chat_message(payload, skip, origin, message.position))
            if actor.kind in (SenderType.CUSTOMER, SenderType.MOBILE):
                await self.sink.publish(events.new_customer_message(payload))
        self._inbox_changed(conversation.id)
        if upload is not None:
            await self._uploads().bind(upload.id, message.id)
        return payload, True

    def _uploads(self) -> Uploads:
        if self.uploads is None:
            raise invalid("This server takes no uploads")
        return self.uploads

    async def _insert_claimed(self, message: SentMessage, counters: Counters,
                              upload_id: int) -> int:
        """``insert_message`` for a message naming an upload: a failed insert hands the
        upload back to its uploader."""
        try:
            return await insert_message(message, counters)
        except Exception:
            await self._uploads().release(upload_id)
            raise

    def _show_file(self, payload: dict[str, Any], stored: dict[str, Any] | None,
                   deleted: bool = False) -> None:
        """A message naming an upload shows it with fresh signed links (``file`` and
        ``media_url``); a deleted one shows none."""
        if deleted or self.uploads is None or stored is None:
            payload["file"], payload["media_url"] = None, ""
            return
        shown = self.uploads.present(stored)
        payload["file"], payload["media_url"] = shown, shown["url"]

    async def _earlier_send(
        self, actor: Actor, conversation_id: int, client_msg_id: str | None
    ) -> dict[str, Any] | None:
        earlier = await Message.get_or_none(
            conversation_id=conversation_id, sender_key=actor.key, client_msg_id=client_msg_id
        ).select_related(*_RELATIONS)
        if earlier is None:
            return None
        return (await self._render([earlier]))[0]

    async def _check_references(self, conversation_id: int, draft: Draft) -> None:
        wanted = {i for i in (draft.parent_message_id, draft.reply_to_id) if i is not None}
        if not wanted:
            return
        found = await Message.filter(conversation_id=conversation_id, id__in=wanted).count()
        if found != len(wanted):
            raise invalid("parent_message_id/reply_to_id must name a message of this conversation")

    async def history(
        self,
        actor: Actor,
        conversation_id: int,
        *,
        limit: int = 50,
        offset: int | None = None,
        before_id: int | None = None,
        after_id: int | None = None,
        latest: bool = False,
        shared: bool = False,
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of messages, oldest first, and whether more lie beyond it.

        ``after_id``: the ones right after; ``before_id``: the ones right before; ``latest``:
        the newest ``limit``; otherwise ``offset`` from the oldest. ``shared``: the caller
        only sends the page on, unchanged: readers of the same page who ask together (the
        clients of a conversation connecting at once) then share one read begun after each
        asked (shared_reads.py)."""
        await self.grants.viewable(actor, conversation_id)  # every join reads a page
        limit = max(1, min(limit, self.limits.history_page_max))
        hidden: frozenset[int] = frozenset()
        if actor.user is not None:
            hidden = await self.grants.blocked(actor.user.id)
        if shared and not hidden and not offset and before_id is None:
            key = (conversation_id, limit, after_id, latest)
            return await self.page_reads.read(key, functools.partial(
                self._page, conversation_id, limit, after_id=after_id, latest=latest))
        return await self._page(conversation_id, limit, hidden=hidden, offset=offset,
                                before_id=before_id, after_id=after_id, latest=latest)

    async def recent(self, actor: Actor, conversation_id: int, limit: int) -> Recent:
        """The latest page, for a caller that only sends it on, unchanged, and tells the
        reader no log position it is current to (a ``/ws/chat/`` connect: its client learns
        positions from the events themselves). Readers who hide no one share it: one read
        for those who ask together (shared_reads.py), kept for the next while nothing in the
        conversation changes (latest_pages.py), and encoded once when it has no links.

        A kept page may predate an event still on its way to this node, which then reaches
        the reader live: a caller that reads the log's position and tells it as the page's
        (Socket.IO's ``join``) uses ``history``, whose shared reads begin after it asked.
        ``Recent.position`` is the log's position read with the page (a kept page's, with
        that read): the events up to it are in the page, and a node still behind there need
        not write them to the reader again."""
        await self.grants.viewable(actor, conversation_id)  # every connect reads a page
        limit = max(1, min(limit, self.limits.history_page_max))
        hidden: frozenset[int] = frozenset()
        if actor.user is not None:
            hidden = await self.grants.blocked(actor.user.id)
        if hidden:
            position = await self.log_position(conversation_id)
            messages, has_more = await self._page(conversation_id, limit, hidden=hidden,
                                                  latest=True)
            return Recent(messages, has_more, None, position)
        page = await self.latest_pages.page(conversation_id, limit, functools.partial(
            self.latest_reads.read, (conversation_id, limit),
            functools.partial(self._latest_page, conversation_id, limit)))
        if page.uploads:
            return Recent(self._presented(page), page.has_more, None, page.position)
        return Recent(page.messages, page.has_more, page.json(), page.position)

    async def _page(
        self,
        conversation_id: int,
        limit: int,
        *,
        hidden: frozenset[int] = frozenset(),
        offset: int | None = None,
        before_id: int | None = None,
        after_id: int | None = None,
        latest: bool = False,
    ) -> tuple[list[dict[str, Any]], bool]:
        """``history``'s read, the senders in ``hidden`` left out."""
        rows, has_more = await self._page_rows(conversation_id, limit, hidden=hidden,
                                               offset=offset, before_id=before_id,
                                               after_id=after_id, latest=latest)
        return await self._render(rows), has_more

    async def _latest_page(self, conversation_id: int, limit: int) -> Page:
        """The latest page as every reader who hides no one gets it, links left out, with
        the log's position its statement read (None for an empty page: nothing in it to
        show twice)."""
        rows, position = await latest_page(conversation_id, limit + 1)
        has_more = len(rows) > limit
        rows = rows[:limit]
        rows.reverse()
        messages, uploads = await self._render_stored(rows)
        return Page(messages, has_more, uploads, position)

    def _presented(self, page: Page) -> list[dict[str, Any]]:
        """A shared page's messages with download links made for this reader."""
        messages = list(page.messages)
        for index, stored, deleted in page.uploads:
            messages[index] = shown = dict(messages[index])
            self._show_file(shown, stored, deleted)
        return messages

    async def _page_rows(
        self,
        conversation_id: int,
        limit: int,
        *,
        hidden: frozenset[int] = frozenset(),
        offset: int | None = None,
        before_id: int | None = None,
        after_id: int | None = None,
        latest: bool = False,
    ) -> tuple[list[Message], bool]:
        """The messages of ``history``'s page, oldest first, and whether more lie beyond."""
        newest_first = latest or before_id is not None
        if not hidden and before_id is None and (not offset or newest_first
                                                 or after_id is not None):
            # The pages every connect reads: plain statements (storage/message_pages.py).
            rows = await message_page(conversation_id, limit + 1, after_id=after_id,
                                      newest_first=newest_first)
            has_more = len(rows) > limit
            rows = rows[:limit]
            if newest_first:
                rows.reverse()
            return rows, has_more
        query = Message.filter(conversation_id=conversation_id)
        if hidden:
            # Messages without a user sender (a device's, a customer's) are no one's to hide:
            # NOT IN alone would drop them (NULL is not NOT IN anything).
            query = query.filter(Q(sender_user_id__isnull=True)
                                 | ~Q(sender_user_id__in=sorted(hidden)))
        if after_id is not None:
            query = query.filter(id__gt=after_id)
        if before_id is not None:
            query = query.filter(id__lt=before_id)
        query = query.order_by("-id" if newest_first else "id")
        if offset and not newest_first and after_id is None:
            query = query.offset(offset)
        rows = await query.limit(limit + 1).select_related(*_RELATIONS)
        has_more = len(rows) > limit
        rows = rows[:limit]
        if newest_first:
            rows.reverse()
        return rows, has_more

    async def get_message(self, actor: Actor, message_id: int) -> dict[str, Any]:
        message = await self._visible_message(actor, message_id)
        return (await self._render([message]))[0]

    async def _render(self, rows: list[Message]) -> list[dict[str, Any]]:
        """Canonical dicts with reactions and read counts, in two queries for the whole page."""
        rendered, uploads = await self._render_stored(rows)
        for index, stored, deleted in uploads:
            self._show_file(rendered[index], stored, deleted)
        return rendered

    async def _render_stored(
        self, rows: list[Message]
    ) -> tuple[list[dict[str, Any]], tuple[tuple[int, dict[str, Any], bool], ...]]:
        """``_render`` without the download links: the dicts, and ``(index, stored file,
        deleted)`` of the messages naming an upload, whose links are still to be made."""
        ids = [m.id for m in rows]
        reactions: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        found, read_counts = await reactions_and_read_counts(ids)  # one statement
        for message_id, emoji, key in found:
            reactions[message_id][emoji].append(key)
        # Every message of a customer's conversation names the customer (seed 001), staff
        # replies too: from the conversations' cached facts.
        customers = {cid: await self._customer_of(cid)
                     for cid in {m.conversation_id for m in rows}}
        rendered = [
            message_dict(m, reactions=reactions.get(m.id), read_by_count=read_counts.get(m.id, 0),
                         customer=customers[m.conversation_id])
            for m in rows
        ]
        uploads = tuple((index, message.file, message.is_deleted)
                        for index, message in enumerate(rows)
                        if isinstance(message.file, dict) and "upload_id" in message.file)
        return rendered, uploads

    async def _customer_of(self, conversation_id: int) -> Customer | None:
        """The conversation's customer, from its cached facts (None: none, or it is gone)."""
        try:
            facts = await self.grants.conversation(conversation_id)
        except ChatError:
            return None
        customer: Customer | None = facts.conversation.customer
        return customer

    async def _visible_message(self, actor: Actor, message_id: int) -> Message:
        if not valid_id(message_id):
            raise not_found("Message")
        message = await Message.get_or_none(id=message_id).select_related(*_RELATIONS)
        if message is None:
            raise not_found("Message")
        await visible_conversation(actor, message.conversation_id)
        return message

    async def set_message_status(
        self, actor: Actor, message_id: int, status: object, *, conversation_id: int | None = None
    ) -> dict[str, Any]:
        """A recipient reports ``delivered`` or ``read``; the message's status only moves up.
        A sender's own message is not theirs to receive: their report records nothing and
        tells no one, and the answer gives the status as it is. Nor is a colleague's reply in
        a support conversation staff's: it is the customer's to receive."""
        if not isinstance(status, str) or status not in (MessageStatus.DELIVERED,
                                                         MessageStatus.READ):
            raise invalid("status must be 'delivered' or 'read'")
        message = await self._scoped_message(actor, message_id, conversation_id)
        stamp = now()
        if message.sender_key != actor.key and not await self._colleagues_reply(actor, message):
            await self._logged_change(message.conversation_id, lambda: self._record_receipt(
                message, actor, MessageStatus(status), stamp))
        return {"message_id": message.id, "status": str(message.status), "timestamp": iso(stamp)}

    async def _record_receipt(
        self, message: Message, actor: Actor, status: MessageStatus, stamp: datetime
    ) -> Event | None:
        """Record the report; None (nothing logged or sent) when it changes neither the
        reader's receipt nor the message's status: a client repeating "read" costs no
        position, log row or fan-out."""
        await self._current(message)
        receipt, created = await Receipt.get_or_create(message_id=message.id,
                                                       reader_key=actor.key)
        before = (receipt.delivered_at, receipt.read_at)
        receipt.delivered_at = receipt.delivered_at or stamp
        if status == MessageStatus.READ:
            receipt.read_at = receipt.read_at or stamp
        receipt_changed = created or (receipt.delivered_at, receipt.read_at) != before
        if receipt_changed:
            await receipt.save()
        status_changed = _STATUS_ORDER[status] > _STATUS_ORDER[MessageStatus(message.status)]
        if status_changed:
            message.status = status
            await Message.filter(id=message.id).update(status=status)
        if not receipt_changed and not status_changed:
            return None
        cid = message.conversation_id
        return events.message_status_update(cid, message.id, str(message.status))

    async def edit_message(
        self, actor: Actor, message_id: int, content: Any, *, conversation_id: int | None = None
    ) -> dict[str, Any]:
        if not isinstance(content, str):
            raise invalid("content must be a string")
        check_content(content, self.limits)
        message = await self._scoped_message(actor, message_id, conversation_id)
        if message.sender_key != actor.key:
            raise forbidden("Only the sender may edit a message")
        if message.is_deleted:
            raise ChatError("message_deleted", "A deleted message cannot be edited", 409)
        cid = message.conversation_id
        skip = await self._may_write(actor, cid)

        async def change() -> Event:
            await self._current(message)
            if message.is_deleted:  # deleted meanwhile
                raise ChatError("message_deleted", "A deleted message cannot be edited", 409)
            message.content = content
            message.is_edited = True
            message.edited_at = now()
            await message.save(update_fields=["content", "is_edited", "edited_at"])
            return events.message_edit(cid, message.id, content, iso(message.edited_at), skip)

        await self._logged_change(cid, change)
        self._inbox_changed(cid)  # a list shows the last message's text
        return (await self._render([message]))[0]

    async def delete_message(
        self, actor: Actor, message_id: int, *, conversation_id: int | None = None
    ) -> dict[str, Any]:
        message = await self._scoped_message(actor, message_id, conversation_id)
        is_admin = actor.user is not None and actor.user.role == Role.ADMIN
        if message.sender_key != actor.key and not is_admin:
            raise forbidden("Only the sender or an admin may delete a message")
        if not is_admin:  # a write, as a send; an admin's delete is moderation, allowed
            await self.grants.writable(actor, message.conversation_id)
        if not message.is_deleted:
            cid = message.conversation_id

            async def change() -> Event | None:
                await self._current(message)
                if message.is_deleted:  # deleted meanwhile: nothing to log again
                    return None
                message.is_deleted = True
                message.deleted_at = now()
                message.content = ""
                await message.save(update_fields=["is_deleted", "deleted_at", "content"])
                return events.message_delete(cid, message.id)

            await self._logged_change(cid, change)
            self._inbox_changed(cid)  # a list shows the last message's text
            if self.uploads is not None and isinstance(message.file, dict):
                await self.uploads.message_deleted(message.file)
        return (await self._render([message]))[0]

    async def toggle_reaction(
        self, actor: Actor, message_id: int, emoji: Any, *, conversation_id: int | None = None
    ) -> dict[str, Any]:
        if not isinstance(emoji, str) or not emoji.strip() or len(emoji) > 32:
            raise invalid("emoji must be a non-empty string of at most 32 characters")
        message = await self._scoped_message(actor, message_id, conversation_id)
        if message.is_deleted:
            raise ChatError("message_deleted", "A deleted message cannot be reacted to", 409)
        cid = message.conversation_id
        skip = await self._may_write(actor, cid)
        action = "removed"

        async def change() -> Event:
            nonlocal action
            await self._current(message)
            if message.is_deleted:  # deleted meanwhile
                raise ChatError("message_deleted", "A deleted message cannot be reacted to",
                                409)
            removed = await Reaction.filter(
                message_id=message.id, reactor_key=actor.key, emoji=emoji
            ).delete()
            if not removed:
                # The conversation's row is locked (its position): a concurrent toggle of
                # the same reaction waits for this one.
                await Reaction.create(message_id=message.id, reactor_key=actor.key, emoji=emoji)
                action = "added"
            return events.message_reaction(cid, message.id, emoji, actor, action, skip)

        await self._logged_change(cid, change)
        rendered = (await self._render([message]))[0]
        return {"action": action, "message_id": message.id, "emoji": emoji,
                "reactions": rendered["reactions"], "message": rendered}

    async def _current(self, message: Message) -> None:
        """Bring ``message`` up to date, inside a logged change (the conversation's row is
        locked, so no other change of it runs): what a concurrent change did shows, and is
        neither overwritten with a stale copy nor logged twice. The answer renders it."""
        fresh = await Message.get(id=message.id)
        for name in ("content", "is_edited", "edited_at", "is_deleted", "deleted_at", "status"):
            setattr(message, name, getattr(fresh, name))

    async def _may_write(self, actor: Actor, conversation_id: int) -> frozenset[str]:
        """Edits and reactions change a conversation: the rules of a send apply (409 when
        closed, 403 when a direct partner blocked the actor). Returns the keys of those who
        blocked the actor, whose sockets do not get the change."""
        await self.grants.writable(actor, conversation_id)
        return await self.grants.skip_keys(actor)

    async def _colleagues_reply(self, actor: Actor, message: Message) -> bool:
        """Whether ``message`` is a staff reply in a support conversation and ``actor`` staff."""
        author = message.sender_user
        if not actor.is_staff or author is None or not author.is_staff:
            return False
        return await Conversation.filter(id=message.conversation_id,
                                         kind=ConversationKind.SUPPORT).exists()

    async def _scoped_message(
        self, actor: Actor, message_id: Any, conversation_id: int | None
    ) -> Message:
        """The message if visible to ``actor`` (and, when given, in ``conversation_id``: a socket
        joined to one conversation cannot reach a message of another by its id)."""
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise invalid("message_id must be an integer")
        message = await self._visible_message(actor, message_id)
        if conversation_id is not None and message.conversation_id != conversation_id:
            raise not_found("Message")
        return message

    async def typing(self, actor: Actor, conversation_id: int, is_typing: Any) -> bool:
        """Tell the others the actor is (not) typing; False when throttled (too many repeats
        of a state the others already know, see ``TypingThrottle``)."""
        if not isinstance(is_typing, bool):
            raise invalid("is_typing must be true or false")
        await self.grants.writable(actor, conversation_id)
        if not self.typing_throttle.allow(actor.key, conversation_id, is_typing):
            return False
        skip = await self.grants.skip_keys(actor)
        await self.sink.publish(events.typing_indicator(conversation_id, actor, is_typing, skip))
        return True
