"""Prometheus metrics of the HL7 side (served by the web app's /metrics).

``radscribe_hl7_outbox_dead_letters_total`` is the alert: any increase means
a signed report did not reach the EMR and needs a person.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INBOUND_MESSAGES = Counter(
    "radscribe_hl7_inbound_messages_total",
    "Inbound HL7 messages by the acknowledgment code they got.",
    ["ack_code"],
)
OUTBOX_DELIVERED = Counter(
    "radscribe_hl7_outbox_delivered_total", "Outbound messages the EMR accepted (AA or CA)."
)
OUTBOX_FAILED_ATTEMPTS = Counter(
    "radscribe_hl7_outbox_failed_attempts_total",
    "Delivery attempts that failed, by reason.",
    ["reason"],
)
OUTBOX_DEAD_LETTERS = Counter(
    "radscribe_hl7_outbox_dead_letters_total",
    "Outbound messages moved to dead-letter (ALERT: a signed report did not reach the EMR).",
)
OUTBOX_DEAD_NOW = Gauge(
    "radscribe_hl7_outbox_dead_letter_messages", "Outbound messages now in dead-letter."
)
OUTBOX_DELIVERY_SECONDS = Histogram(
    "radscribe_hl7_outbox_delivery_seconds",
    "From signing (outbox row created) to the EMR's accepting ACK.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
)
