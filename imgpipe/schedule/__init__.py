"""Schedules: when `imgpipe nightly` bakes a spec (due.py), and the scheduler files that
run nightly: systemd timer (systemd.py), cron.d entry (cron.py), CI workflows (ci.py)."""

from imgpipe.schedule.due import ScheduledSpec, is_due, next_due, read_schedules, spec_schedule

__all__ = ["ScheduledSpec", "is_due", "next_due", "read_schedules", "spec_schedule"]
