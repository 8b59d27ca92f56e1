"""Prometheus metrics, on a registry per service instance (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records_in = Counter(
            "lightfence_records_stored_total", "Records accepted and stored", registry=self.registry
        )
        self.records_duplicate = Counter(
            "lightfence_records_duplicate_total",
            "Records submitted again (acknowledged, not stored twice)",
            registry=self.registry,
        )
        self.records_rejected = Counter(
            "lightfence_records_rejected_total",
            "Records rejected, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.verdicts = Counter(
            "lightfence_verdicts_total",
            "Verdicts computed, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "lightfence_alerts_total", "Alerts raised, by kind", ["kind"], registry=self.registry
        )
        self.pending = Gauge(
            "lightfence_devices_pending_verdict",
            "Devices with records not yet in a verdict",
            registry=self.registry,
        )
        self.latency = Histogram(
            "lightfence_request_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.recompute_seconds = Histogram(
            "lightfence_recompute_seconds",
            "Time of one verdict recompute pass",
            registry=self.registry,
        )
        self.ingest_write_seconds = Histogram(
            "lightfence_ingest_write_seconds",
            "Time of a batch's write transaction, waiting for its audit chain's lock included: "
            "the transactions of one chain are serial (the main chain's across every API "
            "replica, a stream chain's across the members owning its partition)",
            registry=self.registry,
        )
        self.audit_lock_wait_seconds = Histogram(
            "lightfence_audit_lock_wait_seconds",
            "Time a write transaction waited for its audit chain's lock, by chain kind (main or "
            "stream): contention between writers",
            ["chain"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=self.registry,
        )
