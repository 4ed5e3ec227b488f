"""Publishing to ``hris.events`` as an HRIS (or its adapter) does: the tests of goals-worker's HRIS handlers."""

import json

import kombu


def publish(connection, envelope: dict) -> None:
    exchange = kombu.Exchange("hris.events", type="topic", durable=True)
    kombu.Producer(connection.default_channel, exchange=exchange).publish(
        json.dumps(envelope), routing_key=envelope["type"], content_type="application/cloudevents+json",
        content_encoding="utf-8", declare=[exchange])
