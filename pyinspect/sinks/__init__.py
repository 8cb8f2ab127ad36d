"""Station sinks: where records go (see ``base.py`` for the queue, spool and replay they share).

A sink's client library is imported when the sink connects, so this package loads without asyncua
installed; MQTT needs none (``mqtt_wire`` speaks the protocol).
"""

from pyinspect.sinks.base import SPOOL_POLICIES, Record, Sink, SinkDown, SinkError
from pyinspect.sinks.images import ImageFolderSink
from pyinspect.sinks.jsonl import JsonlSink
from pyinspect.sinks.mqtt import MqttSink
from pyinspect.sinks.opcua import OpcUaSink
from pyinspect.sinks.spool import Spool
from pyinspect.sinks.webhook import WebhookSink

__all__ = [
    "SPOOL_POLICIES",
    "ImageFolderSink",
    "JsonlSink",
    "MqttSink",
    "OpcUaSink",
    "Record",
    "Sink",
    "SinkDown",
    "SinkError",
    "Spool",
    "WebhookSink",
]
