"""The database as tests see it: the commands a client sends."""

from pymongo import monitoring


class Commands(monitoring.CommandListener):
    """(command, collection, filter) of everything sent while recording."""

    def __init__(self):
        self.recording = False
        self.seen: list[tuple[str, str, dict]] = []

    def started(self, event):
        if not self.recording or event.command_name not in ("find", "update", "insert", "delete", "aggregate", "count"):
            return
        command = event.command
        collection = command[event.command_name]
        if event.command_name == "update":
            self.seen.extend(("update", collection, update["q"]) for update in command["updates"])
        else:
            self.seen.append((event.command_name, collection, command.get("filter", {})))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def during(self, action) -> list[tuple[str, str, dict]]:
        self.seen, self.recording = [], True
        try:
            action()
        finally:
            self.recording = False
        return self.seen
