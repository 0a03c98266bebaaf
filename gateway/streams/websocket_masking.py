"""Optional accelerator: unmask client frames with the ``websockets`` C helper when present.

RFC 6455 §5.3 makes every client frame XOR-masked with a 4-byte key. wsproto unmasks in
pure Python (about 0.4 GB/s here), which dominated the 1 MiB message benchmark; the
``websockets`` package, when installed, ships a C ``apply_mask`` over 100 times faster. It
plugs in behind wsproto's own masker interface (``process(data)`` with the key rotating
across chunks), so nothing else changes, and without ``websockets`` wsproto's masker stays.
"""

from __future__ import annotations

from collections.abc import Callable

import wsproto.frame_protocol

apply_mask: Callable[[bytes | bytearray | memoryview, bytes | bytearray], bytes] | None
try:
    from websockets.speedups import apply_mask
except ImportError:  # no websockets, or a build without its C extension
    apply_mask = None


class AcceleratedMasker:
    """Same behaviour as ``wsproto.frame_protocol.XorMaskerSimple``, unmasking in C."""

    __slots__ = ("_key",)

    def __init__(self, masking_key: bytes | bytearray) -> None:
        self._key = bytes(masking_key)

    def process(self, data: bytes | bytearray) -> bytes:
        """Unmask ``data``, which continues where the previous piece of the frame ended."""
        if not data:
            return b""
        assert apply_mask is not None
        key = self._key
        result = apply_mask(data, key)
        # The next piece starts at a later offset into the 4-byte key.
        rotation = len(data) % 4
        if rotation:
            self._key = key[rotation:] + key[:rotation]
        return result


def install() -> bool:
    """Use :class:`AcceleratedMasker` for every wsproto frame decoder; False if unavailable."""
    if apply_mask is None:
        return False
    # Replaces a class of wsproto's at run time: setattr, as the types cannot say that
    # AcceleratedMasker stands for XorMaskerSimple (same interface, not a subclass).
    setattr(wsproto.frame_protocol, "XorMaskerSimple", AcceleratedMasker)  # noqa: B010
    return True
