"""Streams: stream events <-> ASGI messages for one request or WebSocket."""
