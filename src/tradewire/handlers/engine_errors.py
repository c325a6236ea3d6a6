"""The one table from engine (domain) errors to wire error codes.

The engine raises :class:`~tradewire.errors.EngineError` subclasses and knows nothing of the
protocol; the router calls :func:`to_request_error` for any exception a handler raises, so every
handler gets the same mapping without a try/except of its own.
"""

from __future__ import annotations

from typing import Final

from tradewire.engine.indicators import IndicatorError
from tradewire.engine.strategy_document import StrategyValidationError
from tradewire.errors import (
    ClusterUnavailable,
    CollectionLimitExceeded,
    CollectionNotFound,
    DatasetNotFound,
    EngineError,
    InvalidRequest,
    InvalidSessionConfig,
    LiveTradingUnavailable,
    NotOwner,
    RequestError,
    ResultsNotAvailable,
    SessionConflict,
    SessionLimitExceeded,
    SessionNotFound,
    StrategyDisabled,
    StrategyInvalid,
    StrategyNotFound,
    UnknownSymbol,
)
from tradewire.protocol.codes import ErrorCode

ENGINE_ERROR_CODES: Final[tuple[tuple[type[Exception], ErrorCode], ...]] = (
    (StrategyNotFound, ErrorCode.STRATEGY_NOT_FOUND),
    (SessionNotFound, ErrorCode.SESSION_NOT_FOUND),
    (DatasetNotFound, ErrorCode.DATASET_NOT_FOUND),
    (CollectionNotFound, ErrorCode.COLLECTION_NOT_FOUND),
    (UnknownSymbol, ErrorCode.UNKNOWN_SYMBOL),
    (NotOwner, ErrorCode.INSUFFICIENT_PERMISSIONS),
    (CollectionLimitExceeded, ErrorCode.COLLECTION_LIMIT_EXCEEDED),
    (StrategyInvalid, ErrorCode.VALIDATION_ERROR),
    (StrategyDisabled, ErrorCode.VALIDATION_ERROR),
    (InvalidSessionConfig, ErrorCode.VALIDATION_ERROR),
    (InvalidRequest, ErrorCode.VALIDATION_ERROR),
    (SessionConflict, ErrorCode.SESSION_CONFLICT),
    (SessionLimitExceeded, ErrorCode.SESSION_LIMIT_EXCEEDED),
    (LiveTradingUnavailable, ErrorCode.LIVE_TRADING_UNAVAILABLE),
    (ResultsNotAvailable, ErrorCode.RESULTS_NOT_AVAILABLE),
    (ClusterUnavailable, ErrorCode.SERVICE_UNAVAILABLE),
)


def to_request_error(exc: Exception) -> RequestError | None:
    """The client-facing form of a domain error; None for anything else (an internal error)."""
    for kind, code in ENGINE_ERROR_CODES:
        if isinstance(exc, kind):
            assert isinstance(exc, EngineError)
            return RequestError(code, exc.message, exc.details or None)
    if isinstance(exc, StrategyValidationError):
        return RequestError(ErrorCode.VALIDATION_ERROR, "strategy document is invalid", exc.result.to_dict())
    if isinstance(exc, IndicatorError):
        return RequestError(ErrorCode.VALIDATION_ERROR, exc.message, {"path": exc.path})
    return None
