"""Dynamic batching: items of concurrent requests share one forward pass.

Requests put their items (a patch, a window, a shot gather) on one queue; a single loop takes the
first waiting item, gathers more of the same shape (the handler's `batch_key`) for at most
`max_wait_s` or until `max_batch_size`, runs `predict_batch` on the model thread and hands each
request its outputs. This is the scheme of Triton's dynamic batcher ("max_queue_delay", preferred
batch sizes: https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/model_configuration.html#dynamic-batcher)
and of LitServe's `max_batch_size`/`batch_timeout`, in a few lines on asyncio.

Items of a request that timed out before their batch started are dropped, not computed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any


@dataclass
class _Entry:
    item: Any
    key: Any
    future: asyncio.Future


class DynamicBatcher:
    """Groups items of concurrent requests into batches of at most `max_batch_size`.

    Args:
        predict_batch: `list of items -> list of outputs` (same order), run on `executor`.
        key: items with equal keys may be stacked (e.g. their shape).
        max_batch_size: largest batch; 1 turns batching off.
        max_wait_s: how long the first item of a batch waits for company.
        executor: where `predict_batch` runs (one thread: one forward pass at a time).
    """

    def __init__(
        self,
        predict_batch: Callable[[list[Any]], list[Any]],
        key: Callable[[Any], Any],
        max_batch_size: int,
        max_wait_s: float,
        executor: Executor,
    ) -> None:
        self.predict_batch, self.key = predict_batch, key
        self.max_batch_size, self.max_wait_s = max(1, max_batch_size), max_wait_s
        self.executor = executor
        self.queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self.held: collections.deque[_Entry] = collections.deque()
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """The outputs of `items`, computed in whatever batches the traffic allows."""
        loop = asyncio.get_running_loop()
        entries = [_Entry(item, self.key(item), loop.create_future()) for item in items]
        for entry in entries:
            self.queue.put_nowait(entry)
        try:
            return list(await asyncio.gather(*(entry.future for entry in entries)))
        except BaseException:
            for entry in entries:
                entry.future.cancel()
            raise

    async def _next(self, timeout: float | None) -> _Entry | None:
        if self.held:
            return self.held.popleft()
        if timeout is None:
            return await self.queue.get()
        if timeout <= 0:
            try:
                return self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _gather(self) -> list[_Entry]:
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        while first.future.done():  # its request gave up
            first = await self._next(None)
        batch = [first]
        deadline = loop.time() + self.max_wait_s
        others: list[_Entry] = []
        while len(batch) < self.max_batch_size:
            entry = await self._next(deadline - loop.time())
            if entry is None:
                break
            if entry.future.done():
                continue
            (batch if entry.key == first.key else others).append(entry)
        self.held.extendleft(reversed(others))
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            batch = [entry for entry in batch if not entry.future.done()]
            if not batch:
                continue
            self.batch_sizes[len(batch)] += 1
            try:
                outputs = await loop.run_in_executor(
                    self.executor, self.predict_batch, [entry.item for entry in batch]
                )
                if len(outputs) != len(batch):
                    raise RuntimeError(f"predict_batch gave {len(outputs)} outputs for {len(batch)} items")
            except Exception as error:
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(error)
                continue
            for entry, output in zip(batch, outputs, strict=True):
                if not entry.future.done():
                    entry.future.set_result(output)
