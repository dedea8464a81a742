"""The next batches of views, prepared in the background while the device trains on this one.

`Prefetcher` runs ``ViewSampler.sample`` in one producer thread, ``depth`` batches ahead. Where
the views are gathered:

- on the GPU (``on``, `workbench.data.store.DeviceSamples`: the store's int16 samples copied to
  the device once): the host only draws indices; the gather runs on the producer's own CUDA
  stream, and the trainer's stream waits on an event. This is the path that can feed a GPU:
  one H100-class GPU trains the paper's model at hundreds of thousands of clips/s, two orders
  of magnitude beyond what host cores copy (``python -m workbench.bench data``);
- on the host: the gathering of each batch shared out over ``workers`` threads (NumPy releases
  the GIL while it copies from the memory map, so the threads run in parallel), into page-locked
  memory on a CUDA host so that the trainer's ``.to(device, non_blocking=True)`` overlaps the
  copy with compute. The path for CPU training and for stores larger than the GPU's memory.

The augmentation and the mel front end run on the device either way (`workbench.train.ViewPipeline`).

Determinism and exact resume: batches are drawn in order by the one producer from the same
generators as the synchronous path, so the sequence is identical; the producer records the
sampler's state after each batch, and `state_dict` returns the state after the last batch the
trainer CONSUMED (not the batches still waiting in the queue), which is what a checkpoint
stores. `load_state_dict` must come before the first `next`, which starts the thread.

Threads, not processes: a thread dies with its process (a killed run leaves no worker behind),
shares the memory map, and costs no pickling; processes would only pay where the work holds
the GIL, which the gather does not. `close` (also on an exception or KeyboardInterrupt, through
``with``) stops and joins every thread.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from workbench.data.store import DeviceSamples
from workbench.data.views import ViewBatch, ViewSampler

_POLL = 0.1  # seconds between checks of the stop flag while a put or a get waits


def auto_workers(device_type: str, cpu_count: int | None = None) -> int:
    """Gathering threads when ``train.data_workers`` is 0: on a GPU host every core but two (the
    trainer's thread and the producer), at most 8; on CPU one, since the cores train."""
    cpus = cpu_count or os.cpu_count() or 1
    return max(1, min(8, cpus - 2)) if device_type == "cuda" else 1


class Prefetcher:
    """``next()`` gives the sampler's batches in order; ``depth`` 0 samples on the caller's thread.

    ``wait_seconds`` adds up the time ``next()`` waited for a batch (the step's data wait).
    """

    def __init__(self, sampler: ViewSampler, batch_size: int, depth: int = 2, workers: int = 1, pin: bool = False,
                 on: DeviceSamples | None = None):
        if depth < 0:
            raise ValueError(f"Prefetcher: depth must be >= 0 batches, got {depth}")
        if workers < 1:
            raise ValueError(f"Prefetcher: workers must be >= 1 threads, got {workers}")
        self.sampler, self.batch_size, self.depth, self.workers, self.pin = sampler, batch_size, depth, workers, pin
        self.on = on
        # a CUDA gather runs on its own stream in the producer; the trainer's stream waits for it
        self._stream = torch.cuda.Stream(on.device) if on is not None and on.device.type == "cuda" else None
        self.wait_seconds = 0.0
        self._consumed: dict[str, Any] = sampler.state_dict()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="gather") if workers > 1 else None
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ consumer side
    def next(self) -> ViewBatch:
        start = time.perf_counter()
        if self.depth == 0:
            batch = self._sample()
            self._consumed = self.sampler.state_dict()
        else:
            if self._thread is None:
                self._start()
            batch, state, ready = self._get()
            self._consumed = state
            if ready is not None:  # the views were gathered on the producer's CUDA stream
                stream = torch.cuda.current_stream(self.on.device)
                stream.wait_event(ready)
                for view in batch.views:
                    view.record_stream(stream)  # not reused by the producer's stream while this one reads it
        self.wait_seconds += time.perf_counter() - start
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state after the last batch consumed by `next` (what resumes exactly)."""
        return self._consumed

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._thread is not None:
            raise RuntimeError("Prefetcher.load_state_dict after the first batch: the queued batches would be "
                               "from the old state")
        self.sampler.load_state_dict(state)
        self._consumed = self.sampler.state_dict()

    def close(self) -> None:
        """Stop the producer and the gathering threads and wait for them; idempotent."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                self._drain()  # a producer blocked on a full queue sees the stop flag
                self._thread.join(_POLL)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ producer side
    def _sample(self) -> ViewBatch:
        return self.sampler.sample(self.batch_size, self._pool, self.workers, self.pin, self.on)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                if self._stream is None:
                    item = (self._sample(), self.sampler.state_dict(), None)
                else:
                    with torch.cuda.stream(self._stream):
                        batch, ready = self._sample(), torch.cuda.Event()
                        ready.record(self._stream)
                    item = (batch, self.sampler.state_dict(), ready)
                while not self._put(item):
                    if self._stop.is_set():
                        return
        except BaseException as error:  # handed to the consumer, which raises it
            self._put_final(error)

    def _put(self, item) -> bool:
        try:
            self._queue.put(item, timeout=_POLL)
            return True
        except queue.Full:
            return False

    def _put_final(self, error: BaseException) -> None:
        while not self._stop.is_set() and not self._put(error):
            pass

    def _get(self) -> tuple[ViewBatch, dict[str, Any], Any]:
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("Prefetcher: the sampling thread stopped without a batch or an error")
                continue
            if isinstance(item, BaseException):
                raise item  # the sampler's own error, with its traceback from the thread
            return item

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
