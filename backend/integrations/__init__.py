"""Outside platforms (CONTRACT section 6): Telegram and Instagram customers in support
conversations.

- ``telegram.py`` / ``instagram.py``: each platform's webhook check, payload parsing and send call.
- ``intake.py``: an inbound message becomes a customer, a support conversation and a message,
  through the ChatService (the same send and edit every other door uses).
- ``outbound.py``: staff replies sent back to the platform in the background, with retries.
- ``delivery.py``: the HTTP call and the error type both platforms' senders share.

The REST doors are in ``backend/rest/integrations.py``; the operator's guide is
``docs/integrations.md``.
"""
