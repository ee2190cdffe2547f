"""Slack incoming webhook with Block Kit: a header, per alert a section with the numbers as fields,
and buttons to the alert and an example trace in tracebox's UI.

Slack's limits are kept: 50 blocks a message, 150 characters a header, 10 fields a section, 2000
characters a field, 75 characters a button label.
"""

from __future__ import annotations

import json

from .alert import Alert
from .channel import Group, Rendered

MAX_ALERTS = 10  # three blocks each, within Slack's 50
MAX_EVIDENCE_FIELDS = 7  # plus score, severity and started: Slack allows 10 fields
ICONS = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}


class SlackChannel:
    def render(self, group: Group) -> Rendered:
        return Rendered(json.dumps(message(group)).encode(), {"Content-Type": "application/json"})


def message(group: Group) -> dict:
    shown = group.alerts[:MAX_ALERTS]
    title = _title(group)
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}}
    ]
    for n, alert in enumerate(shown):
        blocks += _alert_blocks(alert, n)
    if hidden := len(group.alerts) - len(shown):
        more = f"…and {hidden} more in <{_esc(group.external_url)}/alerts|tracebox>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": title, "blocks": blocks}


def _title(group: Group) -> str:
    firing = sum(a.firing for a in group.alerts)
    status = f"Firing: {firing}" if firing else f"Resolved: {len(group.alerts)}"
    where = " · ".join(v for v in group.labels.values() if v)
    if not where and len(group.alerts) == 1:
        where = group.alerts[0].summary
    return f"{ICONS[group.status]} {status} {where}".strip()


def _alert_blocks(alert: Alert, n: int) -> list[dict]:
    state = "RESOLVED" if not alert.firing else alert.labels.get("severity", "").upper()
    fields = [
        _field("Score", f"{alert.score:g}"),
        _field("Status", _esc(state)),
        _field("Started", _date(alert.starts_at_us)),
    ]
    for row in alert.evidence[:MAX_EVIDENCE_FIELDS]:
        numbers = f"expected {row.expected or '-'}\nobserved {row.observed or '-'}"
        fields.append(_field(row.name, _esc(numbers)))
    buttons = [_button("Open alert", alert.url, f"alert-{n}", primary=alert.firing)]
    if alert.trace_urls:
        buttons.append(_button("Example trace", alert.trace_urls[0], f"trace-{n}"))
    return [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*<{_esc(alert.url)}|{_esc(alert.summary)}>*"[:3000]},
            "fields": fields,
        },
        {"type": "actions", "elements": buttons},
        {"type": "divider"},
    ]


def _field(name: str, mrkdwn: str) -> dict:
    return {"type": "mrkdwn", "text": f"*{_esc(name.capitalize())}*\n{mrkdwn}"[:2000]}


def _button(text: str, url: str, action_id: str, primary: bool = False) -> dict:
    button = {
        "type": "button",
        "text": {"type": "plain_text", "text": text[:75]},
        "url": url,
        "action_id": action_id,
    }
    if primary:
        button["style"] = "primary"
    return button


def _date(us: int) -> str:
    seconds = us // 1_000_000
    return f"<!date^{seconds}^{{date_short_pretty}} {{time_secs}}|{seconds}>"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
