"""What an operator sees of a running node: Prometheus metrics, structured logs, request ids.

See docs/operations.md.
"""
