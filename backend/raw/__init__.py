"""Raw WebSocket adapter: the seeds' legacy routes, each speaking its own dialect."""
