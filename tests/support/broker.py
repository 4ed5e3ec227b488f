"""The broker as tests see it: queues declared or not."""


def queue_exists(connection, name: str) -> bool:
    """Whether a queue is declared on the broker (a passive declare fails, and closes its channel, if not)."""
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except Exception:
        return False
