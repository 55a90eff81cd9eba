"""One runner bakes a spec at a time, across hosts sharing a catalog: a bake holds the
spec's lease in the catalog, renews it while it works, and checks it is still its own
before it publishes. A runner killed with -9 stops renewing; its lease expires after
the TTL (at once when the next runner on the same host sees the process is gone).

Runners compare expiry times with their own clocks: keep their clocks in sync (NTP)
to well within the TTL."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from imgpipe.errors import ImgpipeError

if TYPE_CHECKING:
    from imgpipe.catalog import Catalog, LeaseView

DEFAULT_TTL_S = 300.0
TTL_ENV = "IMGPIPE_LEASE_TTL_S"  # seconds; a lease not renewed for this long is free


class LeaseHeld(ImgpipeError):
    """Another runner bakes this spec now: a temporary failure (EX_TEMPFAIL), try later."""

    exit_code = 75


class LeaseLost(ImgpipeError):
    """This runner's lease expired and another runner took the spec: publish nothing."""


def lease_ttl() -> float:
    raw = os.environ.get(TTL_ENV)
    if not raw:
        return DEFAULT_TTL_S
    try:
        ttl = float(raw)
    except ValueError:
        ttl = 0.0
    if ttl < 2:
        raise ImgpipeError(f"{TTL_ENV}={raw!r}: expected a number of seconds, at least 2")
    return ttl


def held_message(lease: LeaseView) -> str:
    return (
        f"spec {lease.spec_name!r} is being baked by another runner (pid {lease.pid} on {lease.host}); "
        f"its lease runs until {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC unless renewed"
    )


class SpecLease:
    """`with SpecLease(catalog, name):` holds the spec's lease for the block, renewed
    every third of its TTL by a daemon thread; `check()` raises LeaseLost if it was lost."""

    def __init__(self, catalog: Catalog, spec_name: str, ttl_s: float | None = None) -> None:
        self.catalog, self.spec_name = catalog, spec_name
        self.ttl = ttl_s if ttl_s is not None else lease_ttl()
        self.holder = secrets.token_hex(16)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> SpecLease:
        lease = self.catalog.acquire_lease(self.spec_name, self.holder, self.ttl)
        if lease.holder != self.holder:
            raise LeaseHeld(
                held_message(lease), hint="wait for it, or bake another spec; a dead runner's lease expires"
            )
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.spec_name}", daemon=True)
        self._renewer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if not self._lost.is_set():
            with contextlib.suppress(ImgpipeError):  # unreleased, it expires after the TTL
                self.catalog.release_lease(self.spec_name, self.holder)

    def check(self) -> None:
        """Before anything is published: is the spec still ours? Asks the catalog."""
        if self._lost.is_set() or not self.catalog.renew_lease(self.spec_name, self.holder, self.ttl):
            self._lost.set()
            raise LeaseLost(
                f"lost the lease on spec {self.spec_name!r}: it was not renewed within {self.ttl:g} s "
                "and another runner took the spec; nothing of this build is published",
                hint="check the runner's connection to the catalog and its clock",
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.catalog.renew_lease(self.spec_name, self.holder, self.ttl):
                    self._lost.set()
                    return
            except ImgpipeError:
                continue  # the catalog is unreachable for now: try again; check() decides
