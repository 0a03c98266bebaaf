"""The protocol state of one HTTP/2 stream (RFC 9113 §5.1): which halves are open, windows."""

from __future__ import annotations


class StreamGone(Exception):
    """The stream is closed (or never opened) on our side: nothing more may be sent on it."""


class StreamRecord:
    """``open`` is both halves open; ``half-closed (remote)`` is ``remote_open`` False, and
    ``half-closed (local)`` is ``local_open`` False. A closed stream has no record."""

    __slots__ = ("body_left", "local_open", "receive_window", "remote_open", "send_window", "unacked")

    def __init__(self, send_window: int, receive_window: int, *, remote_open: bool) -> None:
        self.remote_open = remote_open
        self.local_open = True
        self.send_window = send_window  # the client's window for our DATA (§6.9)
        self.receive_window = receive_window  # what the client may still send us
        self.unacked = 0  # consumed bytes not yet handed back with WINDOW_UPDATE
        self.body_left = -1  # request body bytes its content-length still promises; -1: none
