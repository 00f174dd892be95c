"""Prometheus metrics of the DICOM node.

Receiving and ready detection may run in different processes, so they are
two small groups, each registered in the registry its owner passes (a fresh
one by default, so several nodes in one process do not collide).  With
several receiver processes, prometheus-client's multiprocess mode merges them;
the gauge is summed over live processes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STORE_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ReceiveMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.instances = Counter(
            "radscribe_dicom_instances_received",
            "Instances acknowledged, by outcome (new, identical, replaced).",
            ["outcome"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "radscribe_dicom_bytes_received",
            "Data set bytes of acknowledged instances.",
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "radscribe_dicom_store_seconds",
            "Time from a complete C-STORE request to its response (validate, write, index).",
            buckets=STORE_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.failures = Counter(
            "radscribe_dicom_store_failures",
            "C-STORE requests answered with a failure status, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.active_associations = Gauge(
            "radscribe_dicom_associations_active",
            "Associations currently established.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.associations = Counter(
            "radscribe_dicom_associations_accepted",
            "Associations accepted.",
            registry=self.registry,
        )
        self.rejected_associations = Counter(
            "radscribe_dicom_associations_rejected",
            "Association requests rejected, by reason.",
            ["reason"],
            registry=self.registry,
        )


class ReadyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.series_ready = Counter(
            "radscribe_dicom_series_ready",
            "Series content versions that became ready (each fires once).",
            registry=self.registry,
        )
        self.series_selected = Counter(
            "radscribe_dicom_series_selected",
            "Ready series chosen for drafting.",
            registry=self.registry,
        )
