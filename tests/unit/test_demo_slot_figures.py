"""The demo's summary reports Kling's slots as the simulator counted them (issue 24)."""

from __future__ import annotations

from kling_local.demo import DemoSummary, slot_figures


def test_the_summary_has_busy_share_1303s_and_the_idle_gap():
    # Given the simulator's stats after a run: slots busy 0.97 of the time, two 1303s, gaps of 0.4 / 1.6 s
    stats = {
        "creates": {"accepted": 60, "refused": 3, "refused_by_code": {"1303": 2, "1102": 1}},
        "slots": {
            "busy_share": 0.97,
            "busy_share_backlog": 0.99,
            "idle_gap_s": {"p50": 0.4, "p95": 1.6, "max": 2.1, "n": 56},
        },
    }
    # When the summary's slot figures are read from them
    figures = slot_figures(stats)
    # Then they say so, as fields of the summary (its JSON)
    assert figures == {"slot_busy_share": 0.97, "kling_1303": 2, "idle_gap_p50_s": 0.4, "idle_gap_p95_s": 1.6}
    fields = set(DemoSummary.__dataclass_fields__)
    assert set(figures) <= fields


def test_without_a_simulator_the_slot_figures_are_unknown():
    assert slot_figures(None) == {}
