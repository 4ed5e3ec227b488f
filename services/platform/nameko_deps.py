"""nameko dependency providers shared by every service's worker."""

import eventlet
import pymongo
from nameko.extensions import DependencyProvider

from . import config as config_module
from .mongo import connect
from .outbox import OutboxRelay


class MongoDatabase(DependencyProvider):
    """The service's own database, one client per container."""

    def __init__(self, service: str):
        self.service = service
        self.client: pymongo.MongoClient | None = None

    def setup(self):
        settings = config_module.load(self.service)
        self.client = connect(settings.mongo_uri, f"{self.service}-worker")
        self.database = self.client[settings.database_name]

    def stop(self):
        if self.client is not None:
            self.client.close()

    def get_dependency(self, worker_ctx):
        return self.database


class OutboxRelayProvider(DependencyProvider):
    """One relay per container; nameko's timer never overlaps its own ticks."""

    def __init__(self, service: str, collections: list[str], append_once: frozenset[str] = frozenset()):
        self.service = service
        self.collections = collections
        self.append_once = append_once
        self.relay: OutboxRelay | None = None

    def setup(self):
        settings = config_module.load(self.service)
        self.client = connect(settings.mongo_uri, f"{self.service}-relay")
        self.relay = OutboxRelay.for_service(
            self.client[settings.database_name],
            self.service,
            self.collections,
            settings.amqp_uri,
            batch_size=settings.relay_batch_size,
            append_once=self.append_once,
        )

    def stop(self):
        if self.relay is not None:
            self.relay.close()
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.relay


def green_sleep(seconds: float) -> None:
    eventlet.sleep(seconds)
