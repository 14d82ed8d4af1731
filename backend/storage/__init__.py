"""Storage: the database connection and its settings per engine (``database``), SQLite's
checkpoints (``checkpoints``), and the send path's batched SQL for both engines (``sends``).
Below the service; imports only models and settings."""
