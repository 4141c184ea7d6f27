"""
The real daemon's operations surface: C{/metrics}, C{/healthz} and
C{/readyz} on the admin listener without the cookie, and a metrics
listener of its own where C{[rocketd] metrics} names one.
"""

import os

from prometheus_client.parser import text_string_to_metric_families

from .daemon import HOST, Daemon, _request, freePort


def _value(body: bytes, name: str, **labels) -> float:
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metricsHealthReady(daemon):
    """
    After a publish, C{/metrics} (no cookie) counts it and the request;
    C{/healthz} and C{/readyz} answer 200 without the cookie.
    """
    response = daemon.request(
        "POST",
        "/restms/feed/default",
        body=b'<?xml version="1.0"?><restms xmlns="http://www.restms.org/schema/restms"><message address="x"/></restms>',
        headers={"Content-Type": "application/restms+xml"},
    )
    assert response.status < 300, (response.status, response.body, daemon.logTail())
    metrics = daemon.request("GET", "/metrics", admin=True)
    assert metrics.status == 200, daemon.logTail()
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert _value(metrics.body, "rocketd_messages_published_total") >= 1
    assert _value(metrics.body, "rocketd_http_requests_total", listener="main", face="restms", route="feed") >= 1
    assert _value(metrics.body, "process_cpu_seconds_total") > 0
    assert daemon.request("GET", "/healthz", admin=True).status == 200
    ready = daemon.request("GET", "/readyz", admin=True)
    assert (ready.status, ready.body) == (200, b"ready\n")


def test_metricsListener(tmp_path):
    """C{[rocketd] metrics} serves C{/metrics} on a listener of its own."""
    port = freePort()
    config = tmp_path / "rocketd.conf"
    config.write_text(f"[rocketd]\nmetrics = tcp:{port}:interface={HOST}\n")
    rocketd = Daemon()
    rocketd.start(["--config", str(config)], stateDir=str(tmp_path / "state"))
    try:
        response = _request(port, "GET", "/metrics")
        assert response.status == 200, rocketd.logTail()
        assert _value(response.body, "rocketd_connections_open", listener="metrics") >= 1
        assert _request(port, "GET", "/vhosts").status == 404
    finally:
        rocketd.close()
