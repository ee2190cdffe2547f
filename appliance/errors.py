"""Failures the collector reports to transports, which map them to HTTP or gRPC answers."""


class Overloaded(Exception):
    """The ingest queue is full: answer 429/503 (HTTP) or UNAVAILABLE (gRPC) with a retry hint."""

    def __init__(
        self, retry_after: float = 1.0, message: str = "tracebox is overloaded, retry later"
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(Exception):
    """The store cannot take writes (disk full, database unusable); queries may still work."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
