"""Lease owners: who holds a claimed message, a session slot or a reporter lock (reference §8.3).

An owner names one *run* of one worker: ``<node id>/<worker>/<pid>-<random>``. A restarted
worker is a new run with a new owner, so a late outcome of the old run can never be taken for
the new one's (the fence of every completion compares owners). The prefixes let a supervisor
release what one run held (``run_prefix``) once that process has exited, and what its whole
node held at start (``node_prefix``).
"""

from __future__ import annotations


def node_prefix(node_id: str) -> str:
    """The prefix of every owner of ``node_id``."""
    return f"{node_id}/"


def run_prefix(node_id: str, worker: str, pid: int) -> str:
    """The prefix of the owner of the run of ``worker`` (e.g. ``sender-0``) in process ``pid``."""
    return f"{node_id}/{worker}/{pid}-"


def run_owner(node_id: str, worker: str, pid: int, token: str) -> str:
    """The owner of one worker run; ``token`` is random, drawn once per run."""
    return run_prefix(node_id, worker, pid) + token
