"""When an alert, the clock or an operator starts a run: debounce, cooldown, label minimum.

Pure logic (the service feeds it). Each offer is answered with a decision
the service records on ``runs``, so "why did (or didn't) it retrain?" always
has an answer.

- **debounce**: the first trigger opens a short wait; triggers arriving during
  it join the same run instead of starting another.
- **cooldown**: after a run that published a model, alerts are skipped for a
  while (the new model needs windows of traffic before the monitor can judge
  it); after a rejected or failed run the next alert may try again. An operator
  command is never skipped for cooldown, and the first version (``models
  init``) starts none.
- **minimum new labels**: a due run is skipped when fewer labelled rows
  arrived since the last run than the model file asks for (operator
  commands excepted).
- **one run per model at a time**: a model has at most one pending run.
- **schedule**: a tick every ``schedule`` seconds, counted from the later of
  the last tick and the last run of any outcome (``models init`` included),
  so a tick that is skipped (cooldown, too few labels) or whose candidate is
  rejected waits a whole period before the next. Counting from the last
  *published* run, as this did before, ticked again on every step after a
  skip or a rejection: a re-read of the labels topic and a skip record each
  debounce, or back-to-back runs of a model that never passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainers.job import Trigger
from trainers.modelfile import TriggerPolicy

ALERT_KINDS = ("drift", "skew", "decay", "estimated_decay")  # estimated_decay: off unless trigger.on names it


@dataclass
class Decision:
    action: str  # "pending" | "merged" | "skipped"
    reason: str


@dataclass
class Pending:
    trigger: Trigger
    due_ms: int
    merged: list[str] = field(default_factory=list)


@dataclass
class TriggerState:
    policy: TriggerPolicy
    last_run_ms: int | None = None  # the last run that published (starts the cooldown)
    last_attempt_ms: int | None = None  # the last run of any outcome (new labels are counted from it)
    last_tick_ms: int | None = None  # the last schedule tick, or the last run of any kind: the schedule's origin
    pending: Pending | None = None

    def offer(self, trigger: Trigger, now_ms: int) -> Decision:
        if trigger.kind in ALERT_KINDS and trigger.kind not in self.policy.on:
            return Decision("skipped", f"{trigger.kind} alerts do not trigger this model (trigger.on)")
        if self.pending is not None:
            self.pending.merged.append(trigger.id)
            if trigger.kind == "operator":  # an operator does not wait for the debounce
                self.pending.due_ms = now_ms
            return Decision("merged", f"joined the pending run for {self.pending.trigger.id}")
        if trigger.kind != "operator" and self.last_run_ms is not None:
            left = self.last_run_ms + self.policy.cooldown_seconds * 1000 - now_ms
            if left > 0:
                return Decision("skipped", f"cooldown: {left / 1000:.0f} s left since the last run")
        wait = 0 if trigger.kind == "operator" else int(self.policy.debounce_seconds * 1000)
        self.pending = Pending(trigger, now_ms + wait)
        return Decision("pending", f"run in {wait / 1000:.0f} s")

    def schedule_due(self, now_ms: int) -> Trigger | None:
        period = int(self.policy.schedule_seconds * 1000)
        if not period or self.pending is not None:
            return None
        origin = max((t for t in (self.last_tick_ms, self.last_attempt_ms) if t is not None), default=None)
        if origin is not None and now_ms - origin < period:
            return None
        self.last_tick_ms = now_ms
        return Trigger(f"schedule:{now_ms // period}", "schedule", "scheduled retraining")

    def due(self, now_ms: int) -> Pending | None:
        if self.pending is not None and now_ms >= self.pending.due_ms:
            return self.pending
        return None

    def enough_labels(self, new_labels: int, trigger: Trigger) -> Decision | None:
        """None when the run may go ahead; a skip decision when too few labels arrived."""
        if trigger.kind == "operator" or new_labels >= self.policy.min_new_labels:
            return None
        return Decision("skipped", f"only {new_labels} new labelled rows since the last run "
                                   f"(trigger.min_new_labels is {self.policy.min_new_labels})")

    def finished(self, now_ms: int, published: bool = True) -> None:
        """A run ended. Only a published model starts the cooldown: after a rejected or failed run
        the next alert may try again (the label minimum still applies)."""
        self.pending = None
        self.last_attempt_ms = now_ms
        if published:
            self.last_run_ms = now_ms
