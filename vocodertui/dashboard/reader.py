"""The dashboard's reading side: a thread that turns changes in a run folder into ``RunView``s.

``RunReader.run`` is the body of the app's feed worker. It is woken by watchfiles when something in
the folder changes, or by polling where watchfiles cannot watch, and at least once a tick so that
liveness, machine figures and the ETA stay fresh. No textual here; the app decides what to do with
each view.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from trainer.rundir import RunPaths
from vocodertui.dashboard.feed import RunFeed, RunView

TICK_S = 1.0  # liveness, system figures and ETA are refreshed this often without any file change
COMPARED_TICK_S = 5.0  # the same for a compared run the keys do not steer (its files still wake it at once)
# With no trainer alive only the machine figures move between file changes (which wake the reader at
# once), so the tick slows: on a 2-core VM each wake-up costs ~10 ms of CPU, so an idle dashboard's cost
# is how often it wakes (docs/benchmarks.md, "Dashboard first frame").
IDLE_TICK_S = 5.0
POLL_S = 0.25  # when watchfiles cannot watch the folder


class Waker:
    """Wakes the reader when something in the run folder changes (watchfiles), else every tick."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.changed = threading.Event()
        self.stop = threading.Event()
        self.polling = False
        WATCH.add(self)

    def wait(self, timeout: float) -> None:
        self.changed.wait(min(timeout, POLL_S) if self.polling else timeout)
        self.changed.clear()

    def close(self) -> None:
        self.stop.set()
        self.changed.set()
        WATCH.remove(self)


class FolderWatch:
    """One watchfiles thread for the folders of every open ``Waker``, waking those where something changed.

    watchfiles' loop wakes every ``step`` ms to look at its stop event, a few hundredths of a
    percent of a core each time: one thread per compared run would be most of the dashboard's idle
    CPU. The thread is replaced whenever the set of folders changes.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wakers: set[Waker] = set()
        self.folders: frozenset[Path] = frozenset()
        self.stop = threading.Event()

    def add(self, waker: Waker) -> None:
        with self.lock:
            self.wakers.add(waker)
            self._rewatch()

    def remove(self, waker: Waker) -> None:
        with self.lock:
            self.wakers.discard(waker)
            self._rewatch()

    def _rewatch(self) -> None:
        folders = frozenset(w.folder for w in self.wakers)
        if folders == self.folders:
            return
        self.stop.set()  # the old thread ends at its next step
        self.folders, self.stop = folders, threading.Event()
        if folders:
            threading.Thread(target=self._watch, args=(folders, self.stop), daemon=True, name="run-folder-watch").start()

    def _wakers_in(self, folders: frozenset[Path]) -> list[Waker]:
        with self.lock:
            return [w for w in self.wakers if w.folder in folders]

    def _watch(self, folders: frozenset[Path], stop: threading.Event) -> None:
        missing = frozenset(f for f in folders if not f.is_dir())
        for waker in self._wakers_in(missing):  # they poll; the others are still watched
            waker.polling = True
            waker.changed.set()
        folders -= missing
        if not folders:
            return
        try:
            import watchfiles

            for changes in watchfiles.watch(*folders, stop_event=stop, debounce=50, step=30, raise_interrupt=False):
                changed = {folder for _, path in changes for folder in folders if Path(path).is_relative_to(folder)}
                for waker in self._wakers_in(frozenset(changed)):
                    waker.changed.set()
        except Exception:  # no inotify, too many watches: these readers poll instead
            for waker in self._wakers_in(folders):
                waker.polling = True
                waker.changed.set()


WATCH = FolderWatch()


class RunReader:
    """Reads one run until closed: a view after every change or tick, older lines indexed in between."""

    def __init__(self, run: RunPaths, make_feed: Callable[[RunPaths], RunFeed] = RunFeed, tick_s: float = TICK_S):
        self.run_paths = run
        self.make_feed = make_feed
        self.tick_s = tick_s
        self.waker = Waker(run.root)

    @property
    def closed(self) -> bool:
        return self.waker.stop.is_set()

    def run(self, post: Callable[[RunView], None]) -> None:
        feed = self.make_feed(self.run_paths)
        try:
            if not self.closed:
                post(feed.view(warnings=False))  # the first frame; the warnings follow in the next view
            while not self.closed:
                view = feed.view()
                post(view)
                if feed.index_some():
                    continue  # keep indexing; new lines are still read between chunks
                tick = self.tick_s if view.status.pid is not None else max(self.tick_s, IDLE_TICK_S)  # pid: alive
                self.waker.wait(tick - time.monotonic() % tick)  # on the tick's multiples: compared runs wake together
        finally:
            self.waker.close()

    def set_tick(self, seconds: float) -> None:
        """Read at least this often from now on (it reads once at once, if the tick changes)."""
        if seconds != self.tick_s:
            self.tick_s = seconds
            self.waker.changed.set()

    def close(self) -> None:
        self.waker.close()
