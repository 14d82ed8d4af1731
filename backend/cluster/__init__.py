"""Many nodes: what is shared through Redis when ``REDIS_URL`` is set.

``link`` is the one Redis client of a node and its health; ``manager`` carries every emit
between nodes (python-socketio's Redis manager under the fan-out manager); ``presence`` keeps
presence, typing and ws-stats cluster-wide, with a heartbeat per node and a reaper for nodes
that die. See docs/deployment.md.
"""
