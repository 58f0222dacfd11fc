"""Full garbage collections that walk what changed since the last one, not every held document."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

OLDEST_GENERATION = 2


class FrozenBetweenCompleteCollections:
    """Keeps what survives a full collection frozen (`gc.freeze`) until the heap has doubled.

    CPython's full collection walks every tracked object, and comes each time the objects
    that reached the oldest generation grow by a quarter. The stand-in holds every document
    it was given (several tracked objects each, and the dicts that index them), so with an
    archive of 100,000 events loaded, one full collection took 0.6 s and came about once per
    100,000 replayed events: the CPU per written document grew with the data held.

    After each full collection, what survived is frozen, so later ones walk only what is
    newer. A frozen object is still freed when its last reference goes (a dropped collection,
    a replaced document); only garbage cycles among frozen objects wait. They are reclaimed
    once the heap (the interpreter's allocated blocks: live objects and dead cycles alike,
    read without walking them) is twice what the last complete collection left: everything
    is unfrozen, and the next full collection walks it all. So a complete collection comes
    only after the heap doubled, its cost spread over what was added, and dead cycles never
    take more memory than live data.
    """

    def __init__(self, schedule: Callable[[Callable[[], object]], object] | None = None) -> None:
        """`schedule` (the event loop's `call_soon_threadsafe`) runs the complete collection
        as soon as the heap has doubled; without it, the next full collection is it."""
        self._blocks_after_complete = 0
        self._unfrozen = False
        self._schedule = schedule

    def install(self) -> None:
        """Collect and freeze what exists (the process's modules, mostly), then keep doing so."""
        gc.collect()
        self._blocks_after_complete = sys.getallocatedblocks()
        gc.freeze()
        gc.callbacks.append(self._after_collection)

    def uninstall(self) -> None:
        gc.callbacks.remove(self._after_collection)
        gc.unfreeze()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != OLDEST_GENERATION:
            return
        if self._unfrozen:
            self._blocks_after_complete = sys.getallocatedblocks()
            self._unfrozen = False
        elif sys.getallocatedblocks() > 2 * self._blocks_after_complete:
            gc.unfreeze()
            self._unfrozen = True
            if self._schedule is not None:
                # Not from inside this collection (it would not run): right after it.
                self._schedule(gc.collect)
            return
        gc.freeze()
