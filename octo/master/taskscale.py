"""``--task-workers MIN:MAX``: the task workers' load, and the policy that scales them.

Dispatched tasks (``rt.tasks.dispatch``) wait in the HTTP workers' queues until a task worker
takes them; each HTTP worker counts them queued, taken, and the seconds the taken ones
waited (``octo.stats.TASKS``, copied into its slot). Once a step the master turns those
counters, and the task workers' busy seconds, into a :class:`~octo.master.autoscale.
LoadSample` whose *wait* is the larger of

* the **time to clear the queue**: tasks queued now over the rate they were taken in the
  step (Horizon's "time to clear"; a queue that was not served at all in the step counts as
  never clearing), and
* the mean wait of the tasks taken in the step (a queue that is short but slow to move),

and whose *busy* is the share of the step the task workers ran a task (``rt.tasks.run``
callers queue in the task socket's backlog, which no counter sees: all task workers busy is
their sign). The same :class:`~octo.master.autoscale.Autoscaler` decides on it as for HTTP
workers, with --task-scale-up-wait in place of --scale-up-wait.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from octo.config import Config
from octo.master.autoscale import Labels, LoadSample, ScalePolicy

TASK_LABELS = Labels(wait="task queue time to clear", wait_flag="--task-scale-up-wait")


def task_policy(config: Config) -> ScalePolicy:
    return ScalePolicy(config.min_task_workers, config.max_task_workers,
                       config.task_scale_up_wait, config.scale_up_busy,
                       config.scale_down_busy, config.scale_cooldown, TASK_LABELS)


@dataclasses.dataclass(slots=True)
class _Reading:
    at: float
    handed: int
    waited: float
    busy: dict[int, float]  # task worker pid -> busy seconds


class TaskLoadMeter:
    """Differences between two calls of :meth:`sample`."""

    def __init__(self) -> None:
        self.last: _Reading | None = None

    def sample(self, now: float, queued: int, handed: int, waited: float,
               busy: dict[int, float]) -> LoadSample | None:
        """*queued*: dispatched tasks waiting now; *handed*, *waited*: tasks taken and the
        seconds they waited since the server started (retired workers' included);
        *busy*: busy seconds of each task worker that serves. None until read twice."""
        reading = _Reading(now, handed, waited, dict(busy))
        before, self.last = self.last, reading
        if before is None or now <= before.at:
            return None
        elapsed = now - before.at
        taken = max(0, handed - before.handed)
        shares = [max(0.0, seconds - before.busy[pid]) / elapsed
                  for pid, seconds in busy.items() if pid in before.busy]
        if not shares:
            return None  # no task worker was read twice (all booting or replaced)
        waits = [max(0.0, waited - before.waited) / taken] if taken else []
        if queued:
            waits.append(queued / (taken / elapsed) if taken else float("inf"))
        return LoadSample(max(waits) if waits else None, min(1.0, sum(shares) / len(shares)),
                          len(shares))


def status_lines(reply: dict[str, Any]) -> list[str]:
    """`octo status`: the task workers' autoscaling, when on."""
    scaling = reply.get("task_autoscale")
    if not scaling:
        return []
    load = scaling.get("load")
    shown = ""
    if load:
        wait = "-" if load["wait"] is None else f"{load['wait'] * 1000:.0f}ms"
        shown = f"  time to clear {wait}  busy {load['busy']:.0%}"
    return [f"task workers: {reply.get('task_target')} (autoscale {scaling['min']}.."
            f"{scaling['max']}){shown}"]
