"""The generic webhook: Alertmanager's webhook payload, version "4", so every receiver written for
Alertmanager (ticket bridges, PagerDuty/Opsgenie adapters, chat relays) works unchanged. tracebox's
evidence travels in each alert's annotations (see ``alert.py``)."""

from __future__ import annotations

import json

from .alert import rfc3339
from .channel import Group, Rendered


class WebhookChannel:
    def __init__(self, max_alerts: int = 0) -> None:
        self.max_alerts = max_alerts  # 0: all, as Alertmanager's webhook_config.max_alerts

    def render(self, group: Group) -> Rendered:
        return Rendered(
            json.dumps(payload(group, self.max_alerts)).encode(), {"Content-Type": "application/json"}
        )


def payload(group: Group, max_alerts: int = 0) -> dict:
    alerts = group.alerts[:max_alerts] if max_alerts else group.alerts
    return {
        "version": "4",
        "groupKey": group.key,
        "truncatedAlerts": len(group.alerts) - len(alerts),
        "status": group.status,
        "receiver": group.receiver,
        "groupLabels": group.labels,
        "commonLabels": group.common_labels(),
        "commonAnnotations": group.common_annotations(),
        "externalURL": group.external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_us),
                "endsAt": rfc3339(a.ends_at_us),
                "generatorURL": a.url,
                "fingerprint": a.fingerprint,
            }
            for a in alerts
        ],
    }
