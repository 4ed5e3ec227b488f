"""The raw component the SCIM benchmark compares goals-api's SCIM endpoint with: a bare HTTP server doing the
store's part of the same requests and nothing else.

``python -m bench.scim_bare --mongo-uri URI --db NAME --token T --ready-file PATH``; bench/scim.py gives the
collection the indexes of goals' ``people`` first. Standard-library
http.server (HTTP/1.0, a thread per request: the client runs 4), a bearer-token compare, then:
POST /scim/v2/Users = one ``insert_one`` of the body with an id; PATCH /scim/v2/Users/{id} = one
``find_one_and_update`` setting what the operations name. No validation, no directory, no events, no
filters: what is left when the use case is taken away.
"""

import argparse
import hmac
import json
import signal
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pymongo
from pymongo import ReturnDocument

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def handler_for(collection, token: str):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002
            pass

        def _reply(self, status: int, body) -> None:
            payload = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/scim+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> dict:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

        def _authorized(self) -> bool:
            presented = self.headers.get("Authorization", "").removeprefix("Bearer ")
            return hmac.compare_digest(presented.encode(), token.encode())

        def do_POST(self):  # noqa: N802
            if not self._authorized():
                return self._reply(401, {"detail": "token"})
            body = self._body()
            user_id = f"usr_{uuid.uuid4().hex}"
            # The keys goals-api's indexes hold: the HRIS key (unique) and the userName's.
            external_id = (body.get(ENTERPRISE) or {}).get("employeeNumber") or user_id
            document = {**body, "_id": user_id, "external_id": external_id,
                        "user_name_key": str(body.get("userName", "")).lower()}
            collection.insert_one(document)
            self._reply(201, {**document, "id": document.pop("_id")})

        def do_PATCH(self):  # noqa: N802
            if not self._authorized():
                return self._reply(401, {"detail": "token"})
            changes = {}
            for operation in self._body().get("Operations", []):
                if operation.get("path"):
                    changes[operation["path"]] = operation.get("value")
                elif isinstance(operation.get("value"), dict):
                    changes.update(operation["value"])
            user_id = self.path.rsplit("/", 1)[-1]
            found = collection.find_one_and_update({"_id": user_id}, {"$set": changes},
                                                   return_document=ReturnDocument.AFTER)
            if found is None:
                return self._reply(404, {"detail": "no user"})
            self._reply(200, {**found, "id": found.pop("_id")})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scim_bare")
    for name in ("--mongo-uri", "--db", "--token", "--ready-file"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    client = pymongo.MongoClient(args.mongo_uri, tz_aware=True)
    collection = client[args.db]["people"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(collection, args.token))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Path(args.ready_file).write_text(str(server.server_address[1]))
    stop.wait()
    server.shutdown()
    client.close()


if __name__ == "__main__":
    main()
