"""Confab: a real-time chat server with Socket.IO and the seeds' legacy WebSocket APIs."""
