"""Alert delivery: Alertmanager-compatible webhooks, Slack, signing, routing and a durable outbox.

The lead's wiring needs only what is exported here; the DDL for the store migration is
``NOTIFY_DDL`` (or its parts, ``OUTBOX_DDL``, ``ATTEMPTS_DDL``, ``SILENCES_DDL``, ``NOTIFY_LOG_DDL``).
"""

from .config import NotifyConfig, NotifyConfigError, Receiver, build_config
from .notifier import Notifier
from .outbox import ATTEMPTS_DDL, NOTIFY_DDL, NOTIFY_LOG_DDL, OUTBOX_DDL, SILENCES_DDL
from .sample import SampleResult, send_test_alert
from .signing import verify

__all__ = [
    "ATTEMPTS_DDL",
    "NOTIFY_DDL",
    "NOTIFY_LOG_DDL",
    "OUTBOX_DDL",
    "SILENCES_DDL",
    "Notifier",
    "NotifyConfig",
    "NotifyConfigError",
    "Receiver",
    "SampleResult",
    "build_config",
    "send_test_alert",
    "verify",
]
