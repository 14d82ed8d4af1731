"""The chat service: every chat operation, written once, with no transport in it.

Doors (REST routes, Socket.IO namespaces, raw WebSocket dialects, webhooks) translate their input
into calls here and the results back out. Operations that change what others see publish events
through the injected ``EventSink`` after their transaction commits.
"""
