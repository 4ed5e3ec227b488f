"""The contracts between services: the generated protos and the event catalogue (docs/events.asyncapi.yaml,
read through tests.support.catalogue). Plain files and in-process code: no fixtures of their own."""
