"""The epoch plan: the one owner of a run's length, and the LR multiplier that anneals by its end."""

from __future__ import annotations

import io

import pytest
import torch

from imgclf.training.epoch_plan import EpochPlan, upgraded
from imgclf.training.schedule import warmup_cosine


def _scheduler(plan: EpochPlan, groups: int = 2) -> torch.optim.lr_scheduler.LambdaLR:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(groups)]
    optimizer = torch.optim.SGD([{"params": [p]} for p in params], lr=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, plan)


def test_the_multiplier_is_warmup_cosine_over_the_whole_run():
    scheduler = _scheduler(EpochPlan(updates_per_epoch=7, epochs=5, warmup_updates=7))
    for step in range(35):
        assert scheduler.get_last_lr() == [pytest.approx(0.1 * warmup_cosine(step, 35, 7))] * 2
        scheduler.optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * 0.01)  # annealed to the floor at the end


def test_ending_at_a_partial_epoch_shortens_the_last_epoch_and_the_schedule():
    plan = EpochPlan(updates_per_epoch=10, epochs=8, warmup_updates=5)
    assert (plan.epochs, plan.planned_epochs, plan.updates_in(8)) == (8, 8.0, 10)
    plan.end_at(4, 0.333)
    assert (plan.epochs, plan.total_updates, plan.planned_epochs) == (4, 34, 3.4)
    assert [plan.updates_in(e) for e in (1, 3, 4)] == [10, 10, 4]
    assert plan(34) == pytest.approx(0.01) and plan(20) == warmup_cosine(20, 34, 5)
    plan.end_at(6)  # whole epochs again: a later re-plan may move the end out
    assert (plan.total_updates, plan.planned_epochs, plan.updates_in(6)) == (60, 6.0, 10)


def test_a_partial_epoch_makes_at_least_one_update():
    plan = EpochPlan(updates_per_epoch=3, epochs=2, warmup_updates=0)
    plan.end_at(2, 0.01)
    assert plan.updates_in(2) == 1 and plan.total_updates == 4


def test_the_plan_round_trips_through_the_schedulers_state_dict_and_a_weights_only_load():
    plan = EpochPlan(updates_per_epoch=10, epochs=8, warmup_updates=5)
    plan.end_at(4, 0.5)
    scheduler = _scheduler(plan)
    for _ in range(12):
        scheduler.optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)  # ints only: what last.pt can hold
    buffer.seek(0)
    fresh = EpochPlan(updates_per_epoch=10, epochs=8, warmup_updates=5)
    restored = _scheduler(fresh)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert vars(fresh) == vars(plan) and fresh.planned_epochs == 3.5 and fresh.updates_in(4) == 5
    assert restored.last_epoch == 12 and fresh(12) == plan(12)


def test_a_warmup_cosine_state_from_before_the_plan_becomes_the_same_plan():
    plan = EpochPlan(updates_per_epoch=10, epochs=8, warmup_updates=5)
    plan.end_at(4, 0.5)
    assert upgraded({"total_steps": 35, "warmup_steps": 5}, 10) == vars(plan)
    assert upgraded(vars(plan), 10) == vars(plan)
