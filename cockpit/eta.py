"""When the queue drains: the running runs' own ETAs, plus each queued run's tokens at the
rate runs of the same shape trained at on this machine (their median tokens/s). A queued run
whose shape has never trained here has no rate and is counted, not guessed. Runs are taken
one after another (one worker slot): with several GPUs the queue drains sooner."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from cockpit.history import Histories
from cockpit.runs import Listed, run_config
from cockpit.summary import summarize
from runspec.run.rundir import QUEUED, RUNNING


@dataclass
class Drain:
    seconds: float  # from now, for what could be estimated
    unknown: int  # queued runs without a rate (a shape never trained here)
    runs: int  # running and queued runs counted

    def line(self, clock: bool = True) -> str:
        """'drains at 03:40 (in 1:12:00)' ('drains in 1:12:00' without the clock: the TUI's line
        then depends on the runs alone), with the runs it could not estimate."""
        from cockpit.format import hms

        if not self.runs:
            return "queue empty"
        at = time.strftime("%H:%M", time.localtime(time.time() + self.seconds))
        when = f"drains at {at} (in {hms(self.seconds)})" if clock else f"drains in {hms(self.seconds)}"
        text = when if self.unknown < self.runs else "drain time unknown"
        return text + (f", {self.unknown} run(s) with no rate yet" if self.unknown and self.unknown < self.runs else "")


def shape_rates(summaries) -> dict[str, float]:
    """The median tokens/s that runs of each shape ('4L×128 mla') reached on this machine."""
    rates: dict[str, list[float]] = {}
    for s in summaries:
        if s.median_tok_s:
            rates.setdefault(s.model, []).append(s.median_tok_s)
    return {k: statistics.median(v) for k, v in rates.items()}


def summaries_of(listed: dict[str, Listed], histories: Histories | None = None) -> dict:
    out = {}
    for run_id, x in listed.items():
        if x.state is None:
            continue
        h = histories.get(x.rd) if histories is not None and x.rd.events.exists() else None
        out[run_id] = summarize(x, None, h)
    return out


def drain(listed: dict[str, Listed], order: list[str], histories: Histories | None = None) -> Drain:
    summaries = summaries_of(listed, histories)
    rates = shape_rates(summaries.values())
    seconds, unknown, runs = 0.0, 0, 0
    for s in summaries.values():
        if s.status == RUNNING:
            runs += 1
            if s.eta_s is not None:
                seconds += s.eta_s
            else:
                unknown += 1
    for run_id in order:
        s = summaries.get(run_id)
        if s is None or s.status != QUEUED:
            continue
        runs += 1
        cfg = run_config(listed[run_id].rd)
        rate = rates.get(s.model)
        if cfg is None or not rate:
            unknown += 1
            continue
        seconds += max(0, cfg.train.max_steps - s.step) * cfg.tokens_per_step / rate
    return Drain(seconds, unknown, runs)
