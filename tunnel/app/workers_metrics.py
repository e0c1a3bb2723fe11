"""The Prometheus endpoint of a multi-worker server (`--workers N` with `metrics-listen`).

The endpoint is the supervisor's (one address); the numbers are the workers'. Each worker
keeps the same collector a single process has (`metrics.MetricsServer`, attached to its
runtime, without the HTTP side) and answers a `metrics` request on its control socket with
its exposition text. A scrape asks every worker and serves the series one process would:
samples with the same name and labels are summed (the process totals, the pools, the lag
histogram's buckets), the per-client series are each in one worker (client ids are unique
across the workers), `tunnel_info` once. So dashboards and alerts written for one process
keep working. How the load spreads is in `tunnel_worker_*{worker="i"}` (clients, link and
TUN bytes per worker). A worker that does not answer in time is left out of that scrape
(`tunnel_workers_answered` says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from tunnel.app.worker_ipc import WorkerGroup

if TYPE_CHECKING:
    from tunnel.app.metrics import MetricsServer

__all__ = ["WorkersCollector", "serve_workers"]


class WorkersCollector(Collector):
    def __init__(self, supervisor: WorkerGroup) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        answers = self.supervisor.ask({"op": "metrics"})
        yield GaugeMetricFamily("tunnel_workers", "Worker processes of this server",
                                value=self.supervisor.count)
        yield GaugeMetricFamily("tunnel_workers_answered",
                                "Workers whose numbers are in this scrape", value=len(answers))
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        per_worker = {name: GaugeMetricFamily(f"tunnel_worker_{name}", what, labels=["worker"])
                      for name, what in _PER_WORKER.items()}
        for index, answer in sorted(answers, key=lambda item: item[0]):
            text = answer.get("text")
            if not isinstance(text, str):
                continue
            try:
                parsed = list(text_string_to_metric_families(text))
            except ValueError:
                continue
            for family in parsed:
                if family.name not in families:
                    families[family.name] = Metric(family.name, family.documentation,
                                                   family.type)
                    values[family.name] = {}
                samples = values[family.name]
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if family.name == "tunnel_info":
                        samples[key] = max(samples.get(key, 0.0), sample.value)
                    else:
                        samples[key] = samples.get(key, 0.0) + sample.value
                    source = _SOURCES.get(sample.name)
                    if source is not None and not sample.labels:
                        per_worker[source].add_metric([str(index)], sample.value)
        for name, metric in families.items():
            for (sample_name, labels), value in values[name].items():
                metric.add_sample(sample_name, dict(labels), value)
            yield metric
        yield from per_worker.values()


_PER_WORKER = {
    "clients": "Connected clients of each worker",
    "link_received_bytes": "Bytes received on the link by each worker",
    "link_sent_bytes": "Bytes sent on the link by each worker",
    "tun_read_bytes": "Bytes each worker read from its TUN queue",
    "tun_written_bytes": "Bytes each worker wrote to its TUN queue",
}
_SOURCES = {
    "tunnel_clients": "clients",
    "tunnel_link_received_bytes_total": "link_received_bytes",
    "tunnel_link_sent_bytes_total": "link_sent_bytes",
    "tunnel_tun_read_bytes_total": "tun_read_bytes",
    "tunnel_tun_written_bytes_total": "tun_written_bytes",
}


def serve_workers(metrics: MetricsServer, supervisor: WorkerGroup) -> None:
    """Make `metrics` (not yet open) serve the workers' numbers instead of one runtime's."""
    metrics.registry = CollectorRegistry(auto_describe=False)
    metrics.registry.register(WorkersCollector(supervisor))
