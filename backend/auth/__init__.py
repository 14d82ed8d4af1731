"""Authentication: password hashing, JWT tokens, and resolving credentials to actors."""
