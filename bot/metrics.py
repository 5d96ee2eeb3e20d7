"""Prometheus metrics (prometheus-client), named ``verifybot_*``, with low-cardinality labels
only: never a user id, a phone number or a prefix."""

from __future__ import annotations

from prometheus_client import Counter

FRAUD_TRIPS = Counter(
    "verifybot_fraud_trips",
    "Times the SMS-fraud breaker paused a country or a prefix",
    ["scope"],
)
