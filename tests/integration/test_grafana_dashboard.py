"""``etc/grafana-dashboard.json``: every expression names metrics the product exposes (reference §14)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mailproxyd.drivers import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "grafana-dashboard.json"
_NAME = re.compile(r"\b(gmp_[a-z_]+)\b")
# Label names and values and PromQL words are not metrics; only gmp_ identifiers are checked.


def _expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str) and "gmp_" in value:
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


def _exposed() -> set[str]:
    """Every sample name a scrape can hold, with each labelled series made to exist."""
    acme = metrics.AccountLabels.of("acme", "ACME Corp", "smtp1")
    metrics.ensure_account_series([acme])
    metrics.sync_call("acme", "ok", 0.1)
    metrics.http_request("/health", 200)
    text = metrics.render(metrics.Gauges(1, 2.0, {"acme": 3})).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_expression_names_only_existing_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    expressions = list(_expressions(dashboard))
    assert len(expressions) >= 20
    exposed = _exposed()
    used: set[str] = set()
    for expr in expressions:
        names = set(_NAME.findall(expr))
        assert names, f"no metric in {expr!r}"
        assert names <= exposed, (expr, names - exposed)
        used |= names
    # Throughput, errors, deferrals, queue, sync health and the API are all on it.
    for wanted in (
        "gmp_sent_total",
        "gmp_errors_total",
        "gmp_deferred_total",
        "gmp_rate_limited_total",
        "gmp_pending_messages",
        "gmp_queue_age_seconds",
        "gmp_send_duration_seconds_bucket",
        "gmp_sync_total",
        "gmp_sync_duration_seconds_bucket",
        "gmp_unreported_events",
        "gmp_http_requests_total",
    ):
        assert wanted in used, wanted


def test_every_panel_has_a_query_and_the_layout_does_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel.get("targets"), panel["title"]
        pos = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, panel["title"]
        assert pos["x"] + pos["w"] <= 24
        taken |= cells
