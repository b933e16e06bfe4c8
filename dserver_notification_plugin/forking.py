"""One set of ``os.register_at_fork`` hooks for every background thread owner.

Under ``gunicorn --preload`` the app is created in the master, which then
forks its workers. Threads do not survive a fork and a lock held by one of
them at that moment stays locked forever in the child, so each owner of a
thread (the sync worker, the queue consumers) is told before and after
every fork and brings itself to a safe state. Owners are held weakly: an
app that is garbage-collected drops out.
"""
import os
import weakref

_owners = weakref.WeakSet()
_hooks_installed = False


def register_fork_hooks(owner):
    """Call ``owner._before_fork``, ``_after_fork_in_parent`` and
    ``_after_fork_in_child`` around every fork of this process."""
    global _hooks_installed
    _owners.add(owner)
    if _hooks_installed or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(
        before=lambda: [o._before_fork() for o in list(_owners)],
        after_in_parent=lambda: [o._after_fork_in_parent() for o in list(_owners)],
        after_in_child=lambda: [o._after_fork_in_child() for o in list(_owners)])
    _hooks_installed = True
