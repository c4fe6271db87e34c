"""Dense user numbers per kind (`publisher`, `subscriber`) across all workers.

Publisher n and subscriber n meet on workflow n. Locust's dispatcher may put all publishers on
one worker and all subscribers on another, so local counters cannot pair them: the master
hands out the numbers (a custom message round trip, once per user start)."""

from __future__ import annotations

import collections
import threading
import uuid
from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

_MESSAGE = "taskstream-slot"


class Slots:
    def __init__(self) -> None:
        self._next: collections.Counter[str] = collections.Counter()
        # Under Locust, threading is gevent-patched: these events block only the greenlet.
        self._waiting: dict[str, tuple[threading.Event, list[int]]] = {}

    def install(self, environment: Environment) -> None:
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            runner.register_message(_MESSAGE, self._on_request)
        elif isinstance(runner, WorkerRunner):
            runner.register_message(_MESSAGE, self._on_reply)

    def reset(self) -> None:
        self._next.clear()

    def take(self, environment: Environment, kind: str) -> int:
        runner = environment.runner
        if not isinstance(runner, WorkerRunner):
            return self._count(kind)
        request = uuid.uuid4().hex
        done, slot = self._waiting[request] = (threading.Event(), [])
        runner.send_message(_MESSAGE, {"kind": kind, "id": request})
        try:
            if not done.wait(timeout=30):
                raise TimeoutError("the master did not answer a slot request within 30 s")
            return slot[0]
        finally:
            self._waiting.pop(request, None)

    def _count(self, kind: str) -> int:
        slot = self._next[kind]
        self._next[kind] += 1
        return slot

    def _on_request(self, environment: Environment, msg: Any, **_: Any) -> None:
        assert environment.runner is not None
        reply = {"id": msg.data["id"], "slot": self._count(msg.data["kind"])}
        environment.runner.send_message(_MESSAGE, reply, client_id=msg.node_id)

    def _on_reply(self, environment: Environment, msg: Any, **_: Any) -> None:
        waiting = self._waiting.get(msg.data["id"])
        if waiting is not None:
            waiting[1].append(int(msg.data["slot"]))
            waiting[0].set()


SLOTS = Slots()
