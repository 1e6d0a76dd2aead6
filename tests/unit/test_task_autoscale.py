"""--task-workers MIN:MAX in memory: the task queue's load under an injected clock, the
decisions taken from it, the config and what `octo status` shows."""

from __future__ import annotations

import math

import pytest

from octo import config as config_mod
from octo.config import Config, ConfigError
from octo.master.autoscale import SUSTAIN, Autoscaler, LoadSample
from octo.master.taskscale import TaskLoadMeter, status_lines, task_policy


def test_the_meter_takes_the_larger_of_time_to_clear_and_the_mean_wait() -> None:
    meter = TaskLoadMeter()
    assert meter.sample(10.0, 0, 0, 0.0, {1: 0.0}) is None  # one reading: no rate yet
    # 10 taken in 1 s (10/s), 25 still queued: 2.5 s to clear; they waited 0.4 s each.
    sample = meter.sample(11.0, 25, 10, 4.0, {1: 1.0})
    assert sample is not None
    assert sample.wait == pytest.approx(2.5) and sample.busy == pytest.approx(1.0)
    # A short queue that moves slowly: the mean wait (3 s) beats the time to clear.
    sample = meter.sample(12.0, 1, 20, 34.0, {1: 1.5})
    assert sample is not None and sample.wait == pytest.approx(3.0)
    assert sample.busy == pytest.approx(0.5)
    # Queued, nothing taken in the step: it does not clear at all.
    sample = meter.sample(13.0, 4, 20, 34.0, {1: 2.5})
    assert sample is not None and math.isinf(sample.wait or 0.0)
    # Nothing queued, nothing taken: no evidence of a wait; idle workers.
    sample = meter.sample(14.0, 0, 20, 34.0, {1: 2.5, 2: 0.0})
    assert sample is not None and sample.wait is None and sample.busy == 0.0
    assert sample.workers == 1  # the new worker (pid 2) is read once only
    assert meter.sample(15.0, 0, 20, 34.0, {}) is None  # no task worker to read


def test_task_decisions_name_the_task_flags_and_stay_within_min_max() -> None:
    cfg = Config(task_workers=1, min_task_workers=1, max_task_workers=2, scale_cooldown=2.0)
    scaler = Autoscaler(task_policy(cfg))
    never = LoadSample(math.inf, 1.0, 1)
    decisions = [scaler.decide(100.0 + step, 1, never) for step in range(SUSTAIN)]
    up = decisions[-1]
    assert up is not None and up.change == 1
    assert up.reason.startswith("task queue time to clear infinite (none taken) > "
                                "--task-scale-up-wait 1000 ms")
    slow = LoadSample(1.5, 0.2, 2)
    assert all(scaler.decide(200.0 + step, 2, slow) is None for step in range(10))  # at MAX
    idle = LoadSample(None, 0.0, 2)
    down = [scaler.decide(300.0 + step, 2, idle) for step in range(SUSTAIN)][-1]
    assert down is not None and down.change == -1 and "idle" in down.reason
    assert all(scaler.decide(400.0 + step, 1, idle) is None for step in range(10))  # at MIN
    assert scaler.changes == {"up": 1, "down": 1}


def test_config_task_worker_range() -> None:
    cfg = config_mod.build({"task_workers": "1:4"}, environ={})
    assert (cfg.task_workers, cfg.min_task_workers, cfg.max_task_workers) == (1, 1, 4)
    assert cfg.task_autoscale and cfg.reads_load and cfg.task_worker_ceiling() == 4
    plain = config_mod.build({"task_workers": "3"}, environ={})
    assert (plain.task_workers, plain.task_autoscale) == (3, False)
    env = config_mod.build({}, environ={"OCTO_TASK_WORKERS": "2:3"})
    assert (env.task_workers, env.min_task_workers, env.max_task_workers) == (2, 2, 3)
    flags = config_mod.build({"min_task_workers": 2, "max_task_workers": 5}, environ={})
    assert flags.task_workers == 2 and flags.task_autoscale
    assert not Config(task_workers=2).reads_load
    for bad in ({"min_task_workers": 1}, {"max_task_workers": 3},
                {"task_workers": 5, "min_task_workers": 1, "max_task_workers": 3},
                {"task_workers": 1, "min_task_workers": 1, "max_task_workers": 2,
                 "task_scale_up_wait": 0.0},
                {"workers": 600, "task_workers": 1, "min_task_workers": 1,
                 "max_task_workers": 600}):
        with pytest.raises(ConfigError):
            Config(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="MIN:MAX"):
        config_mod.build({"task_workers": "1:lots"}, environ={})


def test_status_shows_the_task_autoscaling() -> None:
    assert status_lines({"task_target": 2}) == []
    reply = {"task_target": 2, "task_autoscale": {"min": 1, "max": 4, "changes": {},
                                                  "load": {"wait": 1.25, "busy": 0.5}}}
    assert status_lines(reply) == ["task workers: 2 (autoscale 1..4)  time to clear 1250ms  "
                                   "busy 50%"]
