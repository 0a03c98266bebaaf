"""The rooms app: chat rooms, their messages, the WebSocket consumer and demo views."""
