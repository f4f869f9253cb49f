"""The long-running processes' heap settings: start-up objects frozen, a young generation sized for a sync."""

from __future__ import annotations

import gc

from connector.heap import YOUNG_THRESHOLD, freeze_startup_heap


def test_start_up_heap_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD > 700
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
