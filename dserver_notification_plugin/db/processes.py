"""Processes known to be alive, and what becomes of the work of one that is not.

(The SQL; the thread that beats is :mod:`..heartbeat`.)

procrastinate's worker heartbeats and stalled-job detection are the model.
Every process that claims inbox entries or asks for a lease joins
``notification_processes``: its id (the claim owner and lease holder,
``host:pid:token``), its role, when it started and its last heartbeat. A
daemon thread beats every ``DSERVER_NOTIFY_HEARTBEAT_SECONDS``. A process
whose heartbeat is more than :data:`MISSED_BEATS` intervals old is dead
(SIGKILL, out of memory, a host gone): the first live process whose beat
notices it releases its work, its claims back to pending and due now, its
leases expired, and removes its row. A process that stops gracefully does
the same for itself at once (:meth:`Processes.leave`, from ``stop`` and at
interpreter exit).

A claim whose owner is alive stays its owner's however long the sync takes;
``DSERVER_NOTIFY_CLAIM_TIMEOUT_SECONDS`` applies only to owners that never
joined (an older plugin version during a rolling upgrade).

PostgreSQL's session advisory locks would tell a death at once, but hold a
connection per process for its whole life (the LISTEN connection holds one
already), do not exist on SQLite, and break behind a pooler in transaction
mode; heartbeats work the same on both databases, and three missed beats of
2 s keep a crashed process's work waiting well under 10 s.
"""
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import List, Tuple

import sqlalchemy as sa

from ..coverage import UNKNOWN
from ..states import State
from .database import announce_due, now
from .tables import inbox, leases, processes

logger = logging.getLogger(__name__)

#: A process is dead after this many heartbeat intervals without one.
MISSED_BEATS = 3

_identity = {"pid": None, "id": None}
_identity_lock = threading.Lock()


def process_identity() -> str:
    """``host:pid:token`` of this process: the owner of its claims and the
    holder of its leases. Recomputed after a fork (a gunicorn worker is not
    its master); the token keeps a restarted container that gets the same
    pid from passing for the dead process."""
    with _identity_lock:
        if _identity["pid"] != os.getpid():
            _identity["pid"] = os.getpid()
            _identity["id"] = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        return _identity["id"]


@dataclass(frozen=True)
class ProcessInfo:
    """A process row as status shows it: what it holds and when it last beat."""
    id: str
    role: str
    started_at: float
    heartbeat_at: float
    alive: bool
    claims: int
    leases: Tuple[str, ...]

    def as_dict(self):
        return {"id": self.id, "role": self.role, "started_at": self.started_at,
                "heartbeat_at": self.heartbeat_at, "alive": self.alive,
                "claims": self.claims, "leases": list(self.leases)}


def holder_of(lease_holder):
    """The process identity in a lease holder's name (see leases.Lease.holder)."""
    return lease_holder.split("/", 1)[0]


def live_owners_since(since):
    """SELECT of the ids that beat at ``since`` or later (a value or a bound
    parameter)."""
    return sa.select(processes.c.id).where(processes.c.heartbeat_at >= since)


class Processes:
    """This process's row and everyone's liveness, on the plugin's database."""

    def __init__(self, db, heartbeat_seconds, role="dserver", alarm=None):
        """``alarm``: this process's worker alarm, rung when work was released."""
        self.db = db
        self.alarm = alarm
        self.heartbeat_seconds = heartbeat_seconds
        self.role = role
        self._joined_as = None  # the identity whose row we wrote

    @property
    def alive_within(self):
        return self.heartbeat_seconds * MISSED_BEATS

    @property
    def joined(self):
        return self._joined_as == process_identity()

    def join(self, at=None):
        """Write (or refresh) this process's row."""
        at = now() if at is None else at
        me = process_identity()
        with self.db.transaction() as conn:
            if not conn.execute(processes.update().where(processes.c.id == me)
                                .values(heartbeat_at=at, role=self.role)).rowcount:
                conn.execute(processes.insert().values(
                    id=me, role=self.role, started_at=at, heartbeat_at=at))
        self._joined_as = me

    def beat(self, at=None):
        """Renew this process's heartbeat; join again if another process took
        it for dead meanwhile (its claims are gone then: their syncs' results
        are not recorded, as for any lost claim)."""
        at = now() if at is None else at
        with self.db.transaction() as conn:
            renewed = conn.execute(processes.update().where(
                processes.c.id == process_identity()).values(heartbeat_at=at)).rowcount
        if not renewed:
            logger.warning("process %s had been taken for dead; joining again",
                           process_identity())
            self.join(at)

    def reap(self, at=None) -> List[str]:
        """Release the work of every process that stopped beating; their ids."""
        at = now() if at is None else at
        with self.db.transaction() as conn:
            dead = list(conn.execute(sa.select(processes.c.id).where(
                processes.c.heartbeat_at < at - self.alive_within,
                processes.c.id != process_identity())).scalars())  # we beat: alive
            if dead:
                self._release(conn, dead, at)
        for process in dead:
            logger.warning("process %s stopped beating; its claims and leases are released",
                           process)
        if dead and self.alarm is not None:
            self.alarm.ring()
        return dead

    def leave(self, at=None):
        """A graceful stop: release this process's claims and leases at once."""
        if not self.joined:
            return
        at = now() if at is None else at
        with self.db.transaction() as conn:
            released = self._release(conn, [process_identity()], at)
        self._joined_as = None
        logger.info("process %s left; released %d claim(s)", process_identity(), released)

    @staticmethod
    def _release(conn, ids, at) -> int:
        c = inbox.c
        released = conn.execute(inbox.update().where(sa.and_(
            c.claimed_by.in_(ids), c.state == State.PROCESSING.value)).values(
            state=State.PENDING.value, due_at=at, claimed_by=None,
            heard=UNKNOWN)).rowcount  # its sync never finished: what it heard is lost
        held_by_them = sa.or_(*(leases.c.holder.startswith(f"{i}/", autoescape=True)
                                for i in ids), leases.c.holder.in_(ids))
        conn.execute(leases.update().where(held_by_them).values(expires_at=at - 1))
        conn.execute(processes.delete().where(processes.c.id.in_(ids)))
        if released:
            announce_due(conn, at)
        return released

    def known(self, at=None) -> List[ProcessInfo]:
        """Every process row, with what it holds (for status and metrics)."""
        at = now() if at is None else at
        c = inbox.c
        with self.db.transaction() as conn:
            rows = conn.execute(sa.select(processes).order_by(processes.c.started_at)).all()
            claims = dict(conn.execute(
                sa.select(c.claimed_by, sa.func.count()).where(
                    c.state == State.PROCESSING.value).group_by(c.claimed_by)).all())
            held = conn.execute(sa.select(leases.c.holder, leases.c.name).where(
                leases.c.expires_at >= at)).all()
        return [ProcessInfo(row.id, row.role, row.started_at, row.heartbeat_at,
                            row.heartbeat_at >= at - self.alive_within,
                            int(claims.get(row.id, 0)),
                            tuple(sorted(name for holder, name in held
                                         if holder_of(holder) == row.id)))
                for row in rows]
