"""Which handler errors are outages of a server (wait and retry) rather than a bad entry."""

from __future__ import annotations

from pymongo.errors import ConnectionFailure, PyMongoError
from redis.exceptions import ClusterError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# pymongo's labels for errors that a retry of the same work can cure.
TRANSIENT_LABELS = (
    "TransientTransactionError",
    "UnknownTransactionCommitResult",
    "RetryableWriteError",
)


def is_outage(error: BaseException) -> bool:
    """True when `error` says a server was unreachable or busy, not that the entry is bad.

    An entry never goes to the dead letters for an outage, however long it lasts.
    """
    if isinstance(error, RedisConnectionError | RedisTimeoutError | ConnectionFailure):
        return True
    # A Redis Cluster failing over (CLUSTERDOWN, an uncovered slot) or moving a slot for
    # longer than the client's redirections last (TRYAGAIN, "TTL exhausted").
    if isinstance(error, ClusterError | TryAgainError | SlotNotCoveredError):
        return True
    if isinstance(error, PyMongoError) and any(
        error.has_error_label(label) for label in TRANSIENT_LABELS
    ):
        return True
    return isinstance(error, ConnectionError | TimeoutError)
