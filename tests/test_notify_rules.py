"""Alert delivery without the network: rendering, signing, configuration, routing and the rules that
decide when a group notifies."""

from __future__ import annotations

import json
import tomllib

import pytest

from tests.notify_support import T0, engine_alert
from tracebox.detectors.notify import NotifyConfigError, build_config, verify
from tracebox.detectors.notify.alert import Alert
from tracebox.detectors.notify.channel import Group
from tracebox.detectors.notify.dispatch import Dispatcher
from tracebox.detectors.notify.matchers import Matcher, MatcherError
from tracebox.detectors.notify.nflog import Entry, needs_update
from tracebox.detectors.notify.signing import signature
from tracebox.detectors.notify.slack import message
from tracebox.detectors.notify.webhook import payload

BASE = "https://tracebox.example.com"

EXAMPLE_TOML = """
[alerts]
group_by = ["kind", "service"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "4h"
give_up_after = "24h"
receiver = ["ops"]

[alerts.receivers.ops]
webhook = "https://alerts.example.com/tracebox"
secret = "s3cr3t-value"

[alerts.receivers.llm-team]
slack = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX"
send_resolved = false

[[alerts.routes]]
receiver = "llm-team"
matchers = ['kind=~"token_cost|finish_reason"']
group_by = ["service"]
repeat_interval = "1h"
continue = true

[[alerts.routes]]
receiver = "ops"
matchers = ['severity="critical"']
group_wait = "0s"
"""


def alert(alert_id: str = "a1", **kw) -> Alert:
    return Alert.from_engine(engine_alert(alert_id, **kw), BASE, critical_score=12.0)


def group(*alerts: Alert, labels: dict | None = None) -> Group:
    return Group("ops", '{default:ops}/{}:{kind="latency",service="checkout"}', labels or {}, alerts, BASE)


# -- rendering --------------------------------------------------------------------------------


def test_webhook_payload_is_alertmanager_v4() -> None:
    body = payload(
        group(
            alert("a1"), alert("a2", operation="POST /pay", status="resolved"), labels={"service": "checkout"}
        )
    )
    assert set(body) == {
        "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
        "commonAnnotations", "externalURL", "alerts",
    }  # fmt: skip
    assert body["version"] == "4"
    assert body["status"] == "firing"  # any firing alert makes the group firing
    assert body["receiver"] == "ops"
    assert body["groupLabels"] == {"service": "checkout"}
    assert body["commonLabels"] == {
        "alertname": "LatencyAnomaly", "kind": "latency", "service": "checkout", "severity": "warning", "view": "server",
    }  # fmt: skip
    assert body["externalURL"] == BASE
    assert body["truncatedAlerts"] == 0
    first, second = body["alerts"]
    assert set(first) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert first["status"] == "firing"
    assert first["startsAt"] == "2024-06-10T06:12:20.000Z"
    assert first["endsAt"] == "0001-01-01T00:00:00Z"  # Alertmanager's zero time while firing
    assert second["status"] == "resolved"
    assert second["endsAt"] == "2024-06-10T06:14:20.000Z"
    assert first["generatorURL"] == f"{BASE}/alerts/a1"
    assert first["fingerprint"] == "a1"
    assert all(
        isinstance(v, str) for a in body["alerts"] for m in ("labels", "annotations") for v in a[m].values()
    )


def test_webhook_annotations_carry_the_evidence() -> None:
    notes = payload(group(alert("a1")))["alerts"][0]["annotations"]
    assert notes["summary"] == "checkout GET /cart: latency anomaly, median 480 ms (expected 120 ms)"
    assert "p90: expected 200 ms, observed 900 ms" in notes["description"]
    assert json.loads(notes["expected"])["medianUs"] == 120_000
    assert json.loads(notes["observed"])["medianUs"] == 480_000
    assert notes["score"] == "8"
    assert notes["alertURL"] == f"{BASE}/alerts/a1"
    assert notes["exampleTraceURL"] == f"{BASE}/traces/463ac35c9f6413ad48485a3953bb6124"
    assert notes["traceURLs"].splitlines() == [
        f"{BASE}/traces/463ac35c9f6413ad48485a3953bb6124",
        f"{BASE}/traces/a2fb4a1d1a96d312",
    ]


def test_non_scalar_engine_labels_become_annotations_and_score_sets_severity() -> None:
    a = alert(
        kind="token_cost", score=20.0, labels={"view": "route", "signals": ["spend"], "explainedBy": None}
    )
    assert a.labels["severity"] == "critical"
    assert a.labels["alertname"] == "TokenCostSpike"
    assert "signals" not in a.labels
    assert a.annotations["signals"] == '["spend"]'


def test_webhook_max_alerts_truncates_and_says_so() -> None:
    body = payload(group(alert("a1"), alert("a2"), alert("a3")), max_alerts=2)
    assert len(body["alerts"]) == 2
    assert body["truncatedAlerts"] == 1


def test_slack_message_uses_block_kit_within_limits() -> None:
    alerts = [alert(f"a{n}", operation=f"op{n}") for n in range(12)]
    body = message(group(*alerts, labels={"kind": "latency", "service": "checkout"}))
    assert body["text"]  # the notification fallback
    blocks = body["blocks"]
    assert len(blocks) <= 50
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["type"] == "plain_text"
    assert blocks[0]["text"]["text"] == ":rotating_light: Firing: 12 latency · checkout"
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) == 10  # the rest are counted in a context block
    assert blocks[-1]["type"] == "context"
    assert "2 more" in blocks[-1]["elements"][0]["text"]
    section = sections[0]
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith(f"*<{BASE}/alerts/a0|")
    assert len(section["fields"]) <= 10
    assert all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in section["fields"])
    assert "*Median*\nexpected 120 ms\nobserved 480 ms" in [f["text"] for f in section["fields"]]
    actions = blocks[blocks.index(section) + 1]
    assert actions["type"] == "actions"
    buttons = actions["elements"]
    assert [b["type"] for b in buttons] == ["button", "button"]
    assert [b["url"] for b in buttons] == [
        f"{BASE}/alerts/a0",
        f"{BASE}/traces/463ac35c9f6413ad48485a3953bb6124",
    ]
    assert all(b["text"]["type"] == "plain_text" and len(b["text"]["text"]) <= 75 for b in buttons)
    action_ids = [b["action_id"] for blk in blocks if blk["type"] == "actions" for b in blk["elements"]]
    assert len(action_ids) == len(set(action_ids))


def test_slack_escapes_mrkdwn_and_marks_resolved() -> None:
    body = message(group(alert("a1", operation="<script> & co", status="resolved")))
    assert body["blocks"][0]["text"]["text"].startswith(":white_check_mark: Resolved: 1")
    text = body["blocks"][1]["text"]["text"]
    assert "&lt;script&gt; &amp; co" in text and "<script>" not in text


# -- signing ----------------------------------------------------------------------------------


def test_signature_verifies_and_rejects_tampering() -> None:
    body = b'{"version":"4"}'
    header = signature("topsecret", body, int(T0))
    assert header.startswith(f"t={int(T0)},v1=")
    assert verify("topsecret", body, header, now=T0 + 10)
    assert not verify("topsecret", body + b" ", header, now=T0)  # tampered body
    assert not verify("other", body, header, now=T0)  # wrong secret
    assert not verify("topsecret", body, header, now=T0 + 301)  # replayed too late
    assert not verify("topsecret", body, "v1=abc", now=T0)  # no timestamp
    rotated = header + "," + signature("old", body, int(T0)).split(",")[1]
    assert verify("topsecret", body, rotated, now=T0)


def test_receiver_snippet_in_the_docstring_works() -> None:
    from tracebox.detectors.notify import signing

    snippet = signing.__doc__.split("Verifying in a receiver (Python, standard library only)::")[1]
    code = "\n".join(line[4:] for line in snippet.splitlines())
    scope: dict = {}
    exec(code, scope)
    import time

    body = b"{}"
    assert scope["verify"]("k", body, signature("k", body, int(time.time())))
    assert not scope["verify"]("k", b"{ }", signature("k", body, int(time.time())))


# -- configuration ----------------------------------------------------------------------------


def test_config_from_toml_and_flags() -> None:
    section = tomllib.loads(EXAMPLE_TOML)["alerts"]
    config = build_config(
        section,
        webhooks=["http://127.0.0.1:9/hook"],
        slack_webhooks=["https://hooks.slack.com/services/A/B/C"],
        public_url=BASE + "/",
    )
    assert list(config.receivers) == ["ops", "llm-team", "webhook-1", "slack-1"]
    assert config.public_url == BASE
    assert config.receivers["ops"].secret is not None
    assert config.receivers["llm-team"].channel == "slack"
    assert config.receivers["llm-team"].send_resolved is False
    assert config.retry.give_up_after == 86400
    first, second = config.router.routes
    assert (first.receiver, first.group_by, first.timing.repeat_interval, first.continue_) == (
        "llm-team",
        ("service",),
        3600,
        True,
    )
    assert (second.timing.group_wait, second.timing.group_interval) == (0, 300)
    assert [r.receiver for r in config.router.defaults] == ["ops"]


def test_secrets_and_urls_never_show() -> None:
    config = build_config(tomllib.loads(EXAMPLE_TOML)["alerts"])
    shown = (
        repr(config) + str(config.receivers) + json.dumps([r.describe() for r in config.receivers.values()])
    )
    assert "s3cr3t-value" not in shown
    assert "XXXXXXXXXXXX" not in shown and "/tracebox" not in shown
    assert config.receivers["ops"].describe() == {
        "name": "ops", "channel": "webhook", "url": "https://alerts.example.com/...", "signed": True, "sendResolved": True,
    }  # fmt: skip


def test_secret_from_the_environment() -> None:
    section = {"receivers": {"ops": {"webhook": "https://a.example/h", "secret_env": "OPS_SECRET"}}}
    assert build_config(section, env={"OPS_SECRET": "x"}).receivers["ops"].secret.reveal() == "x"
    with pytest.raises(NotifyConfigError, match="OPS_SECRET"):
        build_config(section, env={})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"group_wiat": "1s"}, "unknown keys: group_wiat"),
        ({"receivers": {"x": {"webhook": "ftp://a/b"}}}, "alerts.receivers.x.webhook should be an http"),
        ({"receivers": {"x": {"webhook": "https://a/b", "slack": "https://a/c"}}}, "exactly one of"),
        (
            {"receivers": {"x": {"webhook": "https://a/b"}}, "routes": [{"receiver": "y"}]},
            "names receiver 'y'",
        ),
        (
            {
                "receivers": {"x": {"webhook": "https://a/b"}},
                "routes": [{"receiver": "x", "matchers": ["kind=~("]}],
            },
            "bad regex",
        ),
        ({"group_wait": "soon"}, "alerts.group_wait should be a duration"),
        ({"critical_score": "high"}, "should be a number"),
    ],
)
def test_config_errors_name_the_setting(section: dict, message: str) -> None:
    with pytest.raises(NotifyConfigError, match=message.replace("(", r"\(")):
        build_config(section)


def test_a_bad_url_is_not_echoed() -> None:
    with pytest.raises(NotifyConfigError) as info:
        build_config({}, webhooks=["hooks.slack.com/services/T/B/SECRETPART"])
    assert "SECRETPART" not in str(info.value)


# -- routing ----------------------------------------------------------------------------------


def test_matchers_follow_alertmanager() -> None:
    labels = {"kind": "latency", "service": "checkout"}
    assert Matcher.parse('service="checkout"').matches(labels)
    assert Matcher.parse("service=~check.*").matches(labels)
    assert not Matcher.parse("service=~check").matches(labels)  # anchored
    assert Matcher.parse("kind!=error").matches(labels)
    assert Matcher.parse('kind!~"error|token_cost"').matches(labels)
    assert Matcher.parse('model=""').matches(labels)  # a missing label is the empty string
    with pytest.raises(MatcherError):
        Matcher.parse("no operator")


def test_routes_first_match_continue_and_defaults() -> None:
    router = build_config(tomllib.loads(EXAMPLE_TOML)["alerts"]).router
    token = alert(kind="token_cost", score=20.0).labels  # critical: continues to the second route
    assert [r.id for r in router.match(token)] == ["routes[0]", "routes[1]"]
    assert [r.id for r in router.match(alert(score=20.0).labels)] == ["routes[1]"]
    assert [r.id for r in router.match(alert().labels)] == ["default:ops"]


def test_default_receivers_are_all_receivers() -> None:
    config = build_config({}, webhooks=["http://a.example/1"], slack_webhooks=["https://b.example/2"])
    assert [r.receiver for r in config.router.match(alert().labels)] == ["webhook-1", "slack-1"]


# -- when a group notifies (nflog) --------------------------------------------------------------

HOUR = 3_600_000_000


@pytest.mark.parametrize(
    ("entry", "firing", "resolved", "send_resolved", "age", "expected", "why"),
    [
        (None, {"a"}, set(), True, 0, True, "first news of a firing alert"),
        (None, set(), {"a"}, True, 0, False, "fired and resolved before anyone was told"),
        (Entry(frozenset("a"), frozenset(), 0), {"a", "b"}, set(), True, 0, True, "a new firing alert"),
        (Entry(frozenset("ab"), frozenset(), 0), {"a"}, {"b"}, True, 0, True, "one resolved, send_resolved"),
        (
            Entry(frozenset("ab"), frozenset(), 0),
            {"a"},
            {"b"},
            False,
            0,
            False,
            "one resolved, no send_resolved",
        ),
        (Entry(frozenset("a"), frozenset(), 0), set(), {"a"}, False, 0, True, "all resolved clears the log"),
        (
            Entry(frozenset("a"), frozenset(), 0),
            {"a"},
            set(),
            True,
            HOUR - 1,
            False,
            "unchanged, repeat not due",
        ),
        (Entry(frozenset("a"), frozenset(), 0), {"a"}, set(), True, HOUR, True, "unchanged, repeat due"),
    ],
)
def test_needs_update(entry, firing, resolved, send_resolved, age, expected, why) -> None:
    assert (
        needs_update(
            entry, firing, resolved, send_resolved=send_resolved, repeat_interval_us=HOUR, now_us=age
        )
        is expected
    ), why


def test_group_timers() -> None:
    config = build_config({"group_wait": 30, "group_interval": 300}, webhooks=["http://a.example/1"])
    dispatcher = Dispatcher(config.router)
    dispatcher.insert(alert("a1"), now=0)
    dispatcher.insert(alert("a2", operation="POST /pay"), now=10)  # same kind and service: same group
    dispatcher.insert(alert("a3", service="payments"), now=10)
    assert dispatcher.next_due() == 30
    assert dispatcher.due(29) == []
    checkout, payments = dispatcher.due(40)
    assert set(checkout.alerts) == {"a1", "a2"} and set(payments.alerts) == {"a3"}
    resolved = alert("a2", operation="POST /pay", status="resolved")
    dispatcher.insert(resolved, now=35)
    dispatcher.flushed(checkout, list(checkout.alerts.values()), now=40)
    assert set(checkout.alerts) == {"a1"}  # the resolved alert was handed over, so it goes
    assert checkout.next_flush == 340  # then every group_interval
    dispatcher.insert(alert("a3", service="payments", status="resolved"), now=40)
    dispatcher.flushed(payments, list(payments.alerts.values()), now=40)
    assert list(dispatcher.groups) == [checkout.key]  # an empty group goes
