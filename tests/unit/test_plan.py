"""`selfalign plan`'s arithmetic (jobs/tools/plan.py plan_stages), on hand-made history."""

from __future__ import annotations

import pytest

from jobs.tools.plan import History, plan_stages, render_plan
from udfs.accounting import Prices


def night(rows_in, rows_out, tokens_in=0.0, tokens_out=0.0, gpu=0.0, cpu=0.0, seconds=10.0, nights=2):
    return History(nights, rows_in, rows_out, tokens_in, tokens_out, gpu, cpu, seconds)


def test_pending_rows_flow_on_at_the_rates_the_last_nights_saw():
    past = {
        # judge kept half; concepts read every kept seed (link 1) and kept 90%.
        "judge": night(100, 50, tokens_in=100_000, tokens_out=200, gpu=360, seconds=100),
        "concepts": night(50, 45, tokens_in=25_000, tokens_out=5_000, gpu=180, seconds=50),
        # respond: 10 samples per instruction; its rows out feed execute one to one.
        "respond": night(40, 400, tokens_out=80_000, gpu=3600),
        "execute": night(400, 120, cpu=800, seconds=40),
    }
    plans = plan_stages({"judge": 20, "concepts": 4, "respond": 0, "execute": 0}, past,
                        Prices(gpu_hour=2.0, cpu_hour=0.1))
    judge, concepts, respond, execute = plans
    assert (judge.expected_in, judge.expected_out) == (20, 10)
    assert judge.tokens_in == 20_000 and judge.tokens_out == 40
    assert judge.gpu_hours == pytest.approx(20 * 3.6 / 3600)
    assert judge.seconds == pytest.approx(20.0)
    assert judge.cost == pytest.approx(20 * 3.6 / 3600 * 2.0)
    # 4 already waiting + the judge's 10 new seeds, of which 90% get concepts.
    assert (concepts.expected_in, concepts.expected_out) == (14, 13)
    # concepts' 12.6 -> respond read 40 instructions per 45 concepts -> 11.2, x 10 samples.
    assert (respond.expected_in, respond.expected_out) == (11, 112)
    assert respond.tokens_out == 112 * 200 and respond.gpu_hours == pytest.approx(11.2 * 90 / 3600)
    # 112 programs at 2 CPU-seconds each, priced at 0.1 per CPU-hour.
    assert execute.expected_in == 112 and execute.cpu_hours == pytest.approx(224 / 3600)
    assert execute.cost == pytest.approx(224 / 3600 * 0.1, abs=1e-6)  # costs keep 6 decimals


def test_a_stage_without_history_says_so_and_stops_the_flow():
    plans = plan_stages({"judge": 5, "concepts": 0}, {"concepts": night(10, 10)}, Prices())
    judge, concepts = plans
    assert judge.expected_out is None and judge.cost is None and judge.nights == 0
    assert concepts.expected_in == 0 and concepts.cost is None  # no price set
    screen = render_plan(plans, "/lake")
    assert screen.splitlines()[3].split()[:4] == ["judge", "5", "5", "-"]


def test_the_link_between_stages_is_rows_in_per_row_out_of_the_stage_before():
    past = {"respond": night(10, 100), "execute": night(100, 30), "select": night(9, 3)}
    plans = plan_stages({"respond": 2, "execute": 0, "select": 0}, past, Prices())
    # 2 instructions -> 20 responses -> 6 passing; select read 9 instructions per 30 passes.
    assert [p.expected_in for p in plans] == [2, 20, 2]
