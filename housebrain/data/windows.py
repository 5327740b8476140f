"""Batches grouped into gradient-accumulation windows that know their loss-token count.

With accumulation over k micro-batches, the objective should be the mean loss per reply token over the
whole window (what one big batch would give), as transformers' Trainer does with `num_items_in_batch`.
Averaging each micro-batch on its own and then the k means weighs a token by 1 / (k * tokens of its
micro-batch): short and long samples count differently, and packing (which changes how many tokens a
micro-batch holds) changes the objective. So the training loader's batch sampler forms each epoch's
batches in a seeded random order, groups k consecutive batches into a window, and hands every batch
its window's token count; the task divides the summed token losses by it (times k, since Lightning
divides each micro-batch loss by k).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from common.resumable_loader import global_seed


class AccumulationWindowSampler:
    """Batch sampler: lists of `(row index, window loss tokens)`, an order fixed by (seed, epoch).

    Args:
        row_tokens: loss tokens of each row of the dataset.
        batch_size: rows per micro-batch.
        accumulate: micro-batches per optimizer step (Lightning's `accumulate_grad_batches`).
        seed: order seed; None takes the run's seed (`PL_GLOBAL_SEED`), as `EpochRandomSampler` does.
    """

    def __init__(
        self, row_tokens: list[int], batch_size: int, accumulate: int, seed: int | None = None
    ) -> None:
        self.row_tokens = row_tokens
        self.batch_size = max(int(batch_size), 1)
        self.accumulate = max(int(accumulate), 1)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.row_tokens) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        seed = global_seed() if self.seed is None else self.seed
        order = torch.randperm(
            len(self.row_tokens), generator=torch.Generator().manual_seed(seed + self.epoch)
        )
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        for start in range(0, len(batches), self.accumulate):
            window = batches[start : start + self.accumulate]
            tokens = sum(self.row_tokens[i] for batch in window for i in batch)
            for batch in window:
                yield [(i, tokens) for i in batch]
