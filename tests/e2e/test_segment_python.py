"""The real segment-analytics-python client, unchanged but for its host, sends to `opentally serve`."""

import collections
import urllib.request

import pytest
from segment.analytics.client import Client
from segment.analytics.request import APIError, post

from conftest import dump


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_every_event_is_stored_exactly_once(server, project, data_dir, gzip):
    errors = []
    client = Client(
        write_key=project,
        host=server.url,
        gzip=gzip,
        on_error=lambda e, batch: errors.append(e),
        max_retries=3,
    )
    sent = []
    for i in range(250):
        ok, msg = client.track(
            anonymous_id=f"install-{i % 7}",
            event="fit" if i % 2 else "estimate",
            properties={"step": i, "method": "cbpe"},
            context={"app": {"name": "e2e", "version": "1.0"}, "ip": "203.0.113.9"},
        )
        assert ok
        sent.append(msg["messageId"])
    client.flush()
    client.shutdown()
    assert errors == []
    stored = dump(data_dir)
    ids = [e["messageId"] for e in stored]
    assert collections.Counter(ids).most_common(1)[0][1] == 1, "an event was stored twice"
    assert sorted(ids) == sorted(sent)
    assert all("ip" not in e.get("context", {}) for e in stored)
    assert {e["properties"]["step"] for e in stored} == set(range(250))


def test_a_batch_sent_twice_is_stored_once(server, project, data_dir):
    """A client retry after a lost answer resends the same messageIds."""
    client = Client(write_key=project, host=server.url, sync_mode=True)
    ok, msg = client.track(anonymous_id="a", event="retry", properties={})
    assert ok
    # Resend the exact same message with the client's own transport, as its retry would.
    post(project, host=server.url, batch=[msg])
    post(project, host=server.url, gzip=True, batch=[msg])
    assert [e["messageId"] for e in dump(data_dir)] == [msg["messageId"]]


def test_a_bad_write_key_is_refused_once_not_retried(server, data_dir):
    client = Client(write_key="otw_wrong", host=server.url, sync_mode=True, max_retries=5)
    with pytest.raises(APIError) as refused:
        client.track(anonymous_id="a", event="x")
    # Segment's client reads `code` and `message` from the error body.
    assert (refused.value.status, refused.value.code) == (401, "invalid_write_key")
    with urllib.request.urlopen(server.url + "/metrics") as r:
        metrics = r.read().decode()
    assert 'opentally_http_requests_total{route="batch",status="401"} 1' in metrics
    assert dump(data_dir) == []
