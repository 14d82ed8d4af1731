"""REST routes of every seed family, declared on one Api registry."""
