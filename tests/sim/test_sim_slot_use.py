"""The simulator counts how busy a client kept Kling's slots (issue 24): busy share and the idle gap
from each task's end to the create that took its slot, from its own clock (slot_use.py)."""

from __future__ import annotations

import time

from kling_local.sim.slot_use import idle_gaps, slot_use


def test_each_end_pairs_with_the_first_later_create_not_yet_paired():
    # Given two slots filled at 0, freed at 4 and 6, refilled at 5 and 7 (and the last end never refilled)
    creates, ends = [0.0, 0.0, 5.0, 7.0], [4.0, 6.0, 9.0]
    # When the idle gaps are counted
    gaps = idle_gaps(creates, ends)
    # Then each freed slot stood idle 1 s; the first fill and the drained end count no gap
    assert gaps == [1.0, 1.0]


def test_busy_share_is_busy_slot_time_over_c_times_the_window():
    # Given C = 2 and tasks 0-4, 0-6, 5-9 and one still running since 7 (now 10)
    use = slot_use({"p": [(0.0, 4.0), (0.0, 6.0), (5.0, 9.0), (7.0, None)]}, 2, now=10.0)
    # Then 17 busy slot-seconds of 2 x 10, and while the backlog lasted (to the last create, 7) 12 of 2 x 7
    assert use.busy_share == 0.85
    assert use.busy_share_backlog == round(12 / 14, 3)
    assert use.gap_percentiles()["n"] == 2


def test_the_stats_say_how_long_a_freed_slot_stood_idle(make_sim, make_api):
    # Given an account with one slot and tasks of 0.3 s
    sim = make_sim(concurrency_limit=1, speed=100.0, generation_min_s=30.0, generation_max_s=30.0)
    api = make_api(sim)
    first = api.create_ok()
    # When the slot is refilled about half a second after the task's end
    api.wait_terminal("text2video", first)
    ended = sim.task_object(first)["updated_at"] / 1000
    time.sleep(max(0.0, ended + 0.5 - time.time()))
    api.create_ok()
    # Then the stats count one idle gap of about that, and the slot busy part of the time
    slots = sim.stats()["slots"]
    assert slots["idle_gap_s"]["n"] == 1
    assert 0.4 <= slots["idle_gap_s"]["p50"] <= 2.0
    assert 0 < slots["busy_share"] < 1
