"""Micro-batching: concurrent requests are queued and answered by one background thread.

The worker takes the first waiting request, then keeps collecting for up to `max_wait_ms` or until
`max_batch` requests are in hand, and calls `policy.predict(batch_for(...))` once per group of equally
sized observations (frames of different sizes cannot be stacked). Each request gets a `Future` resolved
with its own row of the prediction. Works for any `tla.policies.base.Policy` that reads no privileged
state (the server refuses the others at start: `tla.serve.app.check_servable`). The worker can be closed
and started again (an ASGI app's lifespan may end and start more than once, e.g. under a test client); a
job submitted to a closed batcher, or left queued when it closes, fails at once with `BatcherClosed`.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from tla.policies.base import batch_for


class BatcherClosed(RuntimeError):
    """The batcher is closed: the server is shutting down."""


@dataclass
class Result:
    action: np.ndarray  # (3,) mm, mm, deg
    text: str | None
    parse_ok: bool
    batch_size: int
    predict_ms: float  # duration of the policy call that answered this request's batch


@dataclass
class _Job:
    obs: np.ndarray  # (8, H, W, 3) uint8
    shape: str
    future: Future


class MicroBatcher:
    def __init__(self, policy, max_batch: int = 8, max_wait_ms: float = 5.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.policy, self.max_batch, self.max_wait = policy, max_batch, max_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # orders submit / start / close
        self.served = 0
        self.start()

    def start(self) -> None:
        """Start the worker thread, unless it runs."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tla-batcher", daemon=True)
                self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, obs: np.ndarray, shape: str) -> Future:
        fut: Future = Future()
        with self._lock:
            if self._thread is None:
                raise BatcherClosed("the policy server is shutting down")
            self._queue.put(_Job(obs, shape, fut))
        return fut

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the jobs queued before this call; any job left fails with BatcherClosed."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(None)
        thread.join(timeout)
        while not thread.is_alive():  # (a worker still busy after `timeout` keeps its queue)
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.future.set_exception(BatcherClosed("the policy server is shutting down"))

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, deadline = [first], time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            groups: dict[tuple, list[_Job]] = {}
            for j in jobs:
                groups.setdefault(j.obs.shape, []).append(j)
            for group in groups.values():
                self._predict(group)
            if stop:
                return

    def _predict(self, jobs: list[_Job]) -> None:
        t0 = time.perf_counter()
        try:
            batch = batch_for(self.policy, np.stack([j.obs for j in jobs]), [j.shape for j in jobs])
            pred = self.policy.predict(batch)
            actions = np.asarray(pred.actions, dtype=np.float64).reshape(len(jobs), 3)
        except Exception as e:  # noqa: BLE001 - a policy failure answers every request of the batch, never kills the worker
            for j in jobs:
                j.future.set_exception(e)
            return
        ms = 1000 * (time.perf_counter() - t0)
        for i, j in enumerate(jobs):
            text = pred.texts[i] if pred.texts is not None else None
            ok = bool(pred.parse_ok[i]) if pred.parse_ok is not None else True
            j.future.set_result(Result(actions[i], text, ok, len(jobs), ms))
        self.served += len(jobs)
