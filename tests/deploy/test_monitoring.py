"""The alert rules and the dashboard parse, and every metric they name is one the code exports.

Exported names are gathered the way a running process gets them: every module of ``app``,
``dicom_node`` and ``models`` is imported (metrics registered at import land in the default
registry), metric groups that take a ``registry`` are built into a fresh one, and collectors
of our own (which read the database at scrape time) are asked to describe themselves.
Counters are exposed with ``_total``, histograms with ``_bucket``, ``_sum`` and ``_count``.
PromQL is parsed with ``promql-parser``; Grafana's variables are replaced before parsing.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "deploy" / "helm" / "radscribe" / "files"
RULES = FILES / "prometheus-rules.yaml"
DASHBOARD = FILES / "grafana-dashboard.json"
PACKAGES = ("app", "dicom_node", "models")
# Series Prometheus makes itself, not the code.
PROMETHEUS_SERIES = frozenset({"up"})
SEVERITIES = frozenset({"critical", "warning"})
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}
EXPOSED_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def our_modules() -> tuple[list[Any], list[str]]:
    modules, failures = [], []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        modules.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            try:
                modules.append(importlib.import_module(info.name))
            except Exception as exc:  # a module another area is still writing
                failures.append(f"{info.name}: {type(exc).__name__}: {exc}")
    return modules, failures


def exposed_names(families: Iterable[Metric]) -> set[str]:
    names = set()
    for family in families:
        for suffix in EXPOSED_SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def metric_groups(modules: list[Any]) -> Iterable[CollectorRegistry]:
    """Classes of ours that register their metrics in a registry they are given."""
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            try:
                parameters = inspect.signature(cls).parameters
            except (TypeError, ValueError):  # builtins and extension types
                continue
            needed = [p for p in parameters.values() if p.default is inspect.Parameter.empty]
            if "registry" in parameters and not needed:
                registry = CollectorRegistry()
                cls(registry=registry)
                yield registry


def own_collectors(modules: list[Any]) -> Iterable[Collector]:
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            ours = cls.__module__ == module.__name__
            if ours and Collector in inspect.getmro(cls) and not inspect.isabstract(cls):
                yield cls()


@pytest.fixture(scope="module")
def exported() -> set[str]:
    modules, failures = our_modules()
    if failures:
        warnings.warn(
            "modules that did not import (their metrics are not counted):\n  "
            + "\n  ".join(failures),
            stacklevel=1,
        )
    names = exposed_names(REGISTRY.collect())
    for registry in metric_groups(modules):
        names |= exposed_names(registry.collect())
    for collector in own_collectors(modules):
        names |= exposed_names(collector.describe())
    return {name for name in names if name.startswith("radscribe_")}


def metric_names(expression: str) -> set[str]:
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    assert not re.search(r"\$\w", expression), f"unknown variable in {expression}"
    tree = promql_parser.parse(expression)  # raises on a syntax error
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(tree, visit)
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_exported_names_are_gathered_from_every_area(exported: set[str]) -> None:
    # One metric of each area that is known to export, so an empty set cannot pass silently.
    assert {
        "radscribe_http_requests_total",
        "radscribe_hl7_outbox_dead_letters_total",
        "radscribe_dicom_instances_received_total",
        "radscribe_job_queue_depth",
    } <= exported


def test_alert_rules_are_well_formed() -> None:
    document = yaml.safe_load(RULES.read_text())
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    alerts = [rule["alert"] for rule in rules()]
    assert len(alerts) == len(set(alerts)), "alert names are unique"
    for rule in rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        metric_names(rule["expr"])


def test_drafting_stalls_page_someone() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    stalled = by_name["RadscribeDraftingStalled"]
    assert stalled["labels"]["severity"] == "critical"
    assert {"radscribe_job_queue_depth", "radscribe_jobs_running"} <= metric_names(stalled["expr"])
    assert by_name["RadscribeHl7DeadLetter"]["labels"]["severity"] == "critical"


def test_every_metric_the_alerts_name_is_exported(exported: set[str]) -> None:
    missing = {
        f"{rule['alert']}: {name}"
        for rule in rules()
        for name in metric_names(rule["expr"]) - PROMETHEUS_SERIES
        if name not in exported
    }
    assert not missing, sorted(missing)


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"].strip("${}") in variables
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_metric_the_dashboard_names_is_exported(exported: set[str]) -> None:
    missing = {
        f"{title}: {name}"
        for title, expression in dashboard_targets()
        for name in metric_names(expression) - PROMETHEUS_SERIES
        if name not in exported
    }
    assert not missing, sorted(missing)


def test_a_metric_that_does_not_exist_is_caught(exported: set[str]) -> None:
    names = metric_names('sum(rate(radscribe_no_such_metric_total{job="radscribe"}[5m]))')
    assert names == {"radscribe_no_such_metric_total"}
    assert not names <= exported
    with pytest.raises(ValueError):
        metric_names("sum(rate(radscribe_http_requests_total[5m])")
