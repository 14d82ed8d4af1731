"""The doors' toolkit: what every door (Socket.IO namespaces, raw WebSocket routes, REST) does
the same way, written once: reading ids and cursors (``ids``), the refusal table that turns a
ChatError into each door's code (``refusals``), reading the credential of a connection and its
rate buckets (``connections``).

It sits in the doors' layer (tests/test_layers.py): it imports the service, auth and the hub,
and nothing below the doors imports it.
"""
