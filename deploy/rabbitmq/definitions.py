"""The broker's definitions for docker compose: one user per service, each limited to its own resources.

    RABBITMQ_ADMIN_PASSWORD=... RABBITMQ_GOALS_PASSWORD=... (one per service) \\
        python -m deploy.rabbitmq.definitions /definitions/definitions.json

compose runs this once before RabbitMQ starts, and RabbitMQ loads the file
at boot (deploy/rabbitmq/rabbitmq.conf), so the passwords come from the
environment and no file in the repository holds one. Loading definitions at
boot also means the well-known guest user is never created.

What each service's user may do (RabbitMQ's configure, write and read
permissions are regular expressions over resource names):

- configure (declare, delete): its own events exchange, that exchange's
  unrouted exchange and queue, its worker's dead-letter exchange
  (``<service>_worker.dlx``), and its worker's handler queues
  (``evt-<source>-<type>--<service>_worker.<method>``) and their dead-letter
  queues - never another service's exchange;
- write (publish, bind a queue): its own events exchange and unrouted
  exchange, its dead-letter exchange and its own queues - so checkins cannot
  publish a ``v2mom_approved`` to ``goals.events``;
- read (consume, bind to an exchange): its own queues and exchanges and the
  events exchanges of the services it consumes.

Its own exchanges include ``<service>.replay`` (direct), through which
ReplayEvents publishes logged events to a queue an integrator bound there with
its own name as routing key. No service may write to the default exchange
(``amq.default``): that would let it publish into any queue by name.

Every events exchange also gets a policy naming its alternate exchange,
``<exchange>.unrouted``, whose durable queue keeps events no consumer's queue
took (services/platform/bus/outbox.py). A policy, as RabbitMQ recommends,
rather than an exchange argument: arguments cannot be changed on an exchange
that already exists.

hris.events is the other way round: the HRIS's user (``hris``) may only
publish there, and goals reads it.

Queue types: the definitions declare no handler queue and no queue type.
Each worker declares its own handler queues and dead-letter queues, classic
or, with ``AMQP_QUEUE_TYPE=quorum``, quorum with an ``x-delivery-limit``
(services/platform/worker/consumer.py), because a queue's type can only be
given as an argument when the queue is created: no policy can set or change
it. The permissions above cover both types alike (a quorum queue's
dead-lettering needs the same write permission on ``<service>_worker.dlx``).
The unrouted queues stay classic: the outbox relay declares them too
(services/platform/bus/outbox.py), they are a parking place that nothing
consumes, and a broker run by compose is a single node with nothing to
replicate to.

notify.events is a feed for integrators (HRIS, chat bridges) that none of our
services consumes: until someone binds a queue, everything it publishes is
unroutable. Its unrouted queue keeps the newest FEED_KEEP events, dropping the
oldest, so a late subscriber finds recent history and the broker does not
fill up; the unroutable alert leaves it out (deploy/prometheus/alerts.yml).
"""

import base64
import hashlib
import json
import os
import re
import secrets
import sys
from pathlib import Path

# Who publishes (has an events exchange) and whose events each service consumes.
PUBLISHERS = ("goals", "checkins", "notify", "hris")
CONSUMES = {"goals": ("goals", "checkins", "hris"), "checkins": ("goals", "checkins"),
            "metrics": ("goals", "checkins"), "notify": ("goals", "checkins")}
SERVICES = tuple(CONSUMES)
# Publishers outside the platform: the HRIS (or its adapter) publishes directory changes to hris.events, which
# goals-worker consumes (services/goals/hris.py). It may publish there and do nothing else.
EXTERNAL_PUBLISHERS = ("hris",)
ADMIN = "admin"
USERS = (ADMIN, *SERVICES, *EXTERNAL_PUBLISHERS)
MIN_PASSWORD_CHARS = 16


def password_variable(user: str) -> str:
    return f"RABBITMQ_{user.upper()}_PASSWORD"


def worker_name(service: str) -> str:
    """The nameko service name of a service's worker, which names its queues and dead-letter exchange."""
    return f"{service}_worker"


def _queues(service: str) -> str:
    # nameko's handler queues: evt-<source>-<type>--<worker>.<method>, and the kernel's <queue>.dlq.
    # Event types may hold dots (the HRIS's employee.hired).
    return rf"evt-[a-z0-9_]+-[a-z0-9_.]+--{re.escape(worker_name(service))}\.[A-Za-z0-9_]+(\.dlq)?"


def permissions(service: str) -> dict[str, str]:
    """The configure, write and read patterns of a service's user."""
    # Its replay exchange too (services/platform/bus/replay.py): ReplayEvents publishes there, to the queues
    # integrators bound to it, never to any queue by name (so no write on the default exchange, amq.default).
    events = rf"{re.escape(service)}\.(events(\.unrouted)?|replay)"
    dlx = rf"{re.escape(worker_name(service))}\.dlx"
    sources = "|".join(rf"{re.escape(source)}\.events" for source in CONSUMES[service])
    return {
        "configure": rf"^({events}|{dlx}|{_queues(service)})$",
        # The dead-letter exchange too: RabbitMQ lets a queue name one only if its declarer may write to it.
        "write": rf"^({events}|{dlx}|{_queues(service)})$",
        "read": rf"^({events}|{dlx}|{_queues(service)}" + (f"|{sources}" if sources else "") + ")$",
    }


def publisher_permissions(publisher: str) -> dict[str, str]:
    """An external publisher's user: write to its own exchange; declare, delete and read nothing."""
    return {"configure": "^$", "write": rf"^{re.escape(publisher)}\.events$", "read": "^$"}


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), a 4-byte salt."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _user(name: str, password: str, tags: list[str]) -> dict:
    return {"name": name, "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": tags}


# Events exchanges that are feeds for others, not our services' input; see the module docstring.
FEEDS = ("notify",)
FEED_KEEP = 10_000


def _exchanges(vhost: str) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """Every events exchange, its unrouted exchange and queue, the binding between them, and the AE policy."""
    exchanges, queues, bindings, policies = [], [], [], []
    for service in PUBLISHERS:
        name, unrouted = f"{service}.events", f"{service}.events.unrouted"
        exchanges += [
            {"name": name, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
             "internal": False, "arguments": {}},
            {"name": unrouted, "vhost": vhost, "type": "fanout", "durable": True, "auto_delete": False,
             "internal": False, "arguments": {}},
        ]
        queues.append({"name": unrouted, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": {}})
        bindings.append({"source": unrouted, "vhost": vhost, "destination": unrouted, "destination_type": "queue",
                         "routing_key": "", "arguments": {}})
        policies.append({"vhost": vhost, "name": f"{service}-events-alternate", "pattern": f"^{re.escape(name)}$",
                         "apply-to": "exchanges", "priority": 0, "definition": {"alternate-exchange": unrouted}})
        if service not in EXTERNAL_PUBLISHERS:
            # ReplayEvents' exchange, declared here so an integrator can bind before the first replay.
            exchanges.append({"name": f"{service}.replay", "vhost": vhost, "type": "direct", "durable": True,
                              "auto_delete": False, "internal": False, "arguments": {}})
        if service in FEEDS:
            policies.append({"vhost": vhost, "name": f"{service}-events-unrouted-bounded",
                             "pattern": f"^{re.escape(unrouted)}$", "apply-to": "queues", "priority": 0,
                             "definition": {"max-length": FEED_KEEP, "overflow": "drop-head"}})
    return exchanges, queues, bindings, policies


def definitions(passwords: dict[str, str], vhost: str = "/", user_prefix: str = "") -> dict:
    """The whole definitions document; ``user_prefix`` lets a test create throwaway users beside real ones."""
    users = [_user(user_prefix + ADMIN, passwords[ADMIN], ["administrator"])]
    granted = [{"user": user_prefix + ADMIN, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}]
    for service in SERVICES:
        users.append(_user(user_prefix + service, passwords[service], []))
        granted.append({"user": user_prefix + service, "vhost": vhost, **permissions(service)})
    for publisher in EXTERNAL_PUBLISHERS:
        users.append(_user(user_prefix + publisher, passwords[publisher], []))
        granted.append({"user": user_prefix + publisher, "vhost": vhost, **publisher_permissions(publisher)})
    exchanges, queues, bindings, policies = _exchanges(vhost)
    return {"users": users, "vhosts": [{"name": vhost}], "permissions": granted, "exchanges": exchanges,
            "queues": queues, "bindings": bindings, "policies": policies}


def passwords_from_environment(environ=os.environ) -> dict[str, str]:
    """Every user's password; refuses, naming each variable, what is missing, short or guest."""
    passwords, problems = {}, []
    for user in USERS:
        variable, value = password_variable(user), environ.get(password_variable(user), "")
        if len(value) < MIN_PASSWORD_CHARS or value == "guest":
            problems.append(f"{variable} must be set to at least {MIN_PASSWORD_CHARS} characters "
                            "(openssl rand -hex 16)")
        passwords[user] = value
    if problems:
        raise SystemExit("rabbitmq definitions: " + "; ".join(problems))
    return passwords


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise SystemExit("usage: python -m deploy.rabbitmq.definitions <output definitions.json>")
    target = Path(argv[0])
    target.write_text(json.dumps(definitions(passwords_from_environment()), indent=2))
    target.chmod(0o644)  # RabbitMQ runs as its own user; the file holds hashes, not passwords
    print(f"wrote {target}: users {', '.join(USERS)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
