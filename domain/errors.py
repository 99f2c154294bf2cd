"""Errors a caller can act on. Each message is one clear line."""


class CarmaError(Exception):
    """Base of every error CARMA raises on purpose."""

    #: CLI exit code: 2 for a user mistake, 1 for a failure found in the store.
    exit_code = 2


class InvalidInput(CarmaError, ValueError):
    """Text, metadata, namespace, id or embedding that breaks a documented rule."""


class FragmentNotFound(CarmaError, KeyError):
    """No fragment has this id."""

    def __init__(self, key: str):
        super().__init__(f"no fragment with id {key!r}")
        self.key = key

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class FragmentGone(CarmaError):
    """The fragment was deleted: it can be read in its history, not changed."""

    def __init__(self, key: str):
        super().__init__(
            f"fragment {key!r} was deleted (its history remains; the id is not reused)"
        )
        self.key = key


class ConflictError(CarmaError):
    """Another writer changed the fragment first; nothing was overwritten."""

    exit_code = 1


class EmbedderMismatch(CarmaError):
    """The store was created with another embedder than the one offered."""


class CorruptEvent(CarmaError):
    """A stored event's bytes fail their checksum: it is never decoded into a wrong value."""

    exit_code = 1

    def __init__(self, *, originator_id: object, version: int, topic: str, position: int | None):
        where = f"at log position {position}" if position is not None else "in the log"
        super().__init__(
            f"corrupt event {topic.rsplit('.', 1)[-1]} (aggregate {originator_id}, "
            f"version {version}) {where}: its checksum does not match its bytes"
        )
        self.originator_id = originator_id
        self.version = version
        self.topic = topic
        self.position = position


class StorageError(CarmaError):
    """The disk or database refused an operation (full, read-only, unreadable).

    A write that raises this was not acknowledged and changed nothing in the log.
    """

    exit_code = 1


class LogLost(CarmaError):
    """The home's log is missing, unreadable or cut short while its projections survive:
    nothing was changed, and `carma recover` can build a new log from them."""

    exit_code = 1
