"""Engines in threads behind a bounded queue: requests that wait together are recognised as one
batch; a full queue refuses at once (the caller answers 429) rather than letting latency grow."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from platestream.log import get_logger
from platestream.workers.engine.base import Engine, Image, ImageResult, Options

log = get_logger(__name__)


class PoolBusyError(Exception):
    """Every engine is busy and the queue is full."""


@dataclass
class _Job:
    images: Sequence[Image]
    options: Sequence[Options]
    future: Future[list[ImageResult]]


class EnginePool:
    def __init__(self, make_engine: Callable[[], Engine], *, engines: int, queue_size: int, max_batch: int) -> None:
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._max_batch = max_batch
        self._engines = [make_engine() for _ in range(engines)]
        self._threads = [
            threading.Thread(target=self._serve, args=(engine,), name=f"engine-{n}", daemon=True)
            for n, engine in enumerate(self._engines)
        ]
        for thread in self._threads:
            thread.start()

    def depth(self) -> int:
        return self._jobs.qsize()

    def submit(self, images: Sequence[Image], options: Sequence[Options]) -> Future[list[ImageResult]]:
        future: Future[list[ImageResult]] = Future()
        try:
            self._jobs.put_nowait(_Job(images, options, future))
        except queue.Full:
            raise PoolBusyError from None
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        for engine in self._engines:
            engine.close()

    def _serve(self, engine: Engine) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            size = len(first.images)
            while size < self._max_batch:  # what else waits now joins this batch
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # keep the stop for this thread's next turn
                    break
                batch.append(more)
                size += len(more.images)
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]  # timed out: skipped
            if not live:
                continue
            try:
                results = engine.recognize(
                    [image for job in live for image in job.images], [o for job in live for o in job.options]
                )
            except Exception as error:  # the callers get the engine's failure
                log.error("engine_failed", error=str(error))
                for job in live:
                    job.future.set_exception(error)
                continue
            start = 0
            for job in live:
                job.future.set_result(results[start : start + len(job.images)])
                start += len(job.images)
