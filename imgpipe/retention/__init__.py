"""Retention: which old builds `imgpipe prune` removes (policy), and how (AWS, local files),
planned first and journaled as it runs (prune)."""

from imgpipe.retention.policy import Action, Decision, decide
from imgpipe.retention.prune import Pruner, PruneReport, prune

__all__ = ["Action", "Decision", "PruneReport", "Pruner", "decide", "prune"]
