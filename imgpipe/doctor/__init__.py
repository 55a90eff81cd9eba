"""`imgpipe doctor`: is this host ready to bake? One check per thing a bake needs, each
with what was found and what to do about it."""

from imgpipe.doctor.checks import Check, Status
from imgpipe.doctor.run import Host, Report, run_doctor

__all__ = ["Check", "Host", "Report", "Status", "run_doctor"]
