"""The error labels MongoDB 7.0 gives a failed command, by the rules of its error_labels.cpp."""

from __future__ import annotations

from typing import Any

TRANSIENT_TRANSACTION_ERROR = "TransientTransactionError"
RETRYABLE_WRITE_ERROR = "RetryableWriteError"

# ErrorCodes category RetriableError: the node could not do the work now (network, shutdown,
# step-down, not primary), so the same request may succeed when sent again.
RETRIABLE_ERROR_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        134,  # ReadConcernMajorityNotAvailableYet
        189,  # PrimarySteppedDown
        262,  # ExceededTimeLimit
        317,  # ConnectionPoolExpired
        358,  # InternalTransactionNotSupported
        384,  # ConnectionError
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
        50915,  # BackupCursorOpenConflictWithCheckpoint
    }
)
# A transaction failing with one of these left nothing behind, whatever command failed.
ALWAYS_TRANSIENT_CODES = frozenset(
    {
        24,  # LockTimeout
        112,  # WriteConflict
        249,  # StaleDbVersion
        267,  # PreparedTransactionInProgress
        343,  # ShardCannotRefreshDueToLocksHeld
    }
)
SNAPSHOT_ERROR_CODES = frozenset({239, 246, 250, 272})  # SnapshotTooOld, SnapshotUnavailable, ...
NEED_RETARGETTING_CODES = frozenset({150, 13388})  # StaleEpoch, StaleConfig
INTERNAL_TRANSACTION_NOT_SUPPORTED = 358
NO_SUCH_TRANSACTION = 251
COMMIT_OR_ABORT = frozenset({"commitTransaction", "abortTransaction"})
# ErrorCodes categories NotPrimaryError and ShutdownError: MongoDB adds its topologyVersion to a
# reply failing with one, so drivers can tell a stale "not primary" from news.
STATE_CHANGE_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})


def is_transient_transaction_error(
    code: int, *, has_write_concern_error: bool, commit_or_abort: bool
) -> bool:
    """Whether retrying the whole transaction is safe after this error (as MongoDB decides)."""
    if code == INTERNAL_TRANSACTION_NOT_SUPPORTED:
        return False
    if code in ALWAYS_TRANSIENT_CODES or code in SNAPSHOT_ERROR_CODES:
        return True
    if code in NEED_RETARGETTING_CODES:
        return True
    if commit_or_abort:
        # The commit may have happened and be rolled back later only if a write concern failed.
        return code == NO_SUCH_TRANSACTION and not has_write_concern_error
    return code in RETRIABLE_ERROR_CODES or code == NO_SUCH_TRANSACTION


def error_labels(
    command_name: str,
    command: dict[str, Any],
    code: int | None,
    write_concern_code: int | None,
) -> list[str]:
    """The labels for a reply that failed with `code` and/or a write concern error.

    As in MongoDB, a transaction statement (txnNumber and autocommit given) that failed in a way
    that left nothing behind is a TransientTransactionError, commitTransaction included; otherwise
    a retryable write (txnNumber without autocommit) or a commit/abort that failed, or whose write
    concern failed, with a retriable code is a RetryableWriteError. Never both.
    """
    has_txn_number = command.get("txnNumber") is not None
    in_transaction = has_txn_number and "autocommit" in command
    commit_or_abort = command_name in COMMIT_OR_ABORT
    if (
        code is not None
        and in_transaction
        and is_transient_transaction_error(
            code,
            has_write_concern_error=write_concern_code is not None,
            commit_or_abort=commit_or_abort,
        )
    ):
        return [TRANSIENT_TRANSACTION_ERROR]
    retryable_write = has_txn_number and "autocommit" not in command
    if (retryable_write or (in_transaction and commit_or_abort)) and (
        code in RETRIABLE_ERROR_CODES or write_concern_code in RETRIABLE_ERROR_CODES
    ):
        return [RETRYABLE_WRITE_ERROR]
    return []
