"""Prometheus metrics of one gateway (its own registry, so several gateways in a process stay apart).

Labels are route templates, methods, status codes and fixed reason words — never paths with values, tokens
or addresses.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("nexus_gateway_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=r)
        self.latency = Histogram("nexus_gateway_request_seconds", "Time to answer a request", ["method", "route"],
                                 registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.records = Counter("nexus_gateway_ingest_records", "Records received by ingest", ["outcome"], registry=r)
        self.auth_refused = Counter("nexus_gateway_auth_refused", "Requests refused by authentication or role",
                                    ["status"], registry=r)
        self.rate_limited = Counter("nexus_gateway_rate_limited", "Requests refused by a rate limit", registry=r)
        self.ws_clients = Gauge("nexus_gateway_ws_clients", "Connected WebSocket clients", registry=r)
        self.ws_dropped = Counter("nexus_gateway_ws_dropped", "Live messages dropped for slow clients", registry=r)
        self.ws_closed = Counter("nexus_gateway_ws_closed", "Live WebSocket connections the gateway closed: too_slow "
                                 "(4008), expired or revoked credentials (4401)", ["reason"], registry=r)
        self.ws_refused = Counter("nexus_gateway_ws_refused", "Live WebSocket upgrades refused: the credential "
                                  "already held ws_per_principal sockets", registry=r)
        self.ws_waiting_bytes = Gauge("nexus_gateway_ws_waiting_bytes", "Bytes waiting for live WebSocket clients "
                                      "(queued, or written but not yet flushed to their sockets)", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
