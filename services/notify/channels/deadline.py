"""One deadline for a whole send, not just for each socket operation.

A socket timeout bounds one connect or one read. A receiver that sends one
byte of its answer every few seconds would restart that clock on every byte
and hold the send for ever. ``Deadline`` shuts the socket down when the whole
send's time is up, which ends whatever read or write is waiting on it.

It uses a ``threading.Timer``: in notify-worker, after eventlet.monkey_patch(),
that is a green thread and the socket a green socket, so the same code keeps
one stuck receiver from holding up the other deliveries there too.
"""

import socket
import threading
import time


class Deadline:
    def __init__(self, seconds: float, socket_of):
        """``socket_of()`` returns the send's socket, or None while there is none yet."""
        self.seconds = seconds
        self.expired = False
        self._socket_of = socket_of
        self._started = time.monotonic()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(0.001, self.seconds - (time.monotonic() - self._started))

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        sock = self._socket_of()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the send ended on its own
