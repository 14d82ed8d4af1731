"""The real-time layer: rooms, members, dialects, presence, and the one fan-out path."""
