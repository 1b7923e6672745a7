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
from typing import Callable, Optional

from trainer.rundir import RunPaths
from vocodertui.dashboard.feed import RunFeed, RunView

# How long a reader sleeps when no file in its run folder changes (a change wakes it at once): what
# moves without one is the steered run's liveness, ETA and machine figures, and a compared run's
# liveness. With no trainer alive a compared run shows nothing that moves, and the steered run only its
# machine figures. On a 2-core VM each wake-up costs ~10-20 ms of CPU, so an idle dashboard's cost is
# how often it wakes (docs/benchmarks.md, "Dashboard first frame").
TICK_S = 1.0  # the steered run, its trainer alive
COMPARED_TICK_S = 5.0  # a compared run the keys do not steer, its trainer alive
IDLE_TICK_S = 10.0  # the steered run, no trainer alive: its machine figures
POLL_S = 0.25  # when watchfiles cannot watch the folder
WATCH_STEP_MS = 100  # watchfiles looks at its changes this often: a change is seen within two steps


class Waker:
    """Wakes the reader when something in the run folder changes (watchfiles), else every tick."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.changed = threading.Event()
        self.stop = threading.Event()
        self.polling = False
        WATCH.add(self)

    def wait(self, timeout: Optional[float]) -> bool:
        """Until something changes, or ``timeout`` seconds (None: no limit) pass; False if nothing changed
        (a polling waker cannot tell: True)."""
        changed = self.changed.wait(min(timeout or POLL_S, POLL_S) if self.polling else timeout)
        self.changed.clear()
        return changed or self.polling

    def close(self) -> None:
        self.stop.set()
        self.changed.set()
        WATCH.remove(self)


class FolderWatch:
    """One watchfiles thread for the folders of every open ``Waker``, waking those where something changed.

    watchfiles' loop wakes every ``step`` ms to look at its stop event, a few hundredths of a
    percent of a core each time: one thread per compared run would be most of the dashboard's idle
    CPU. The thread is replaced whenever the set of folders changes; once its watches are up, every
    reader reads once, for what changed while there were none (a reader with no tick, a compared run
    without a trainer, would otherwise miss it until the next change).
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

            watching = False
            # the first yield, a change or a timeout, comes from the loop of a watcher whose watches are up
            for changes in watchfiles.watch(*folders, stop_event=stop, debounce=50, step=WATCH_STEP_MS, rust_timeout=1000,
                                            yield_on_timeout=True, raise_interrupt=False):
                if watching:
                    changed = {folder for _, path in changes for folder in folders if Path(path).is_relative_to(folder)}
                else:
                    changed, watching = folders, True
                for waker in self._wakers_in(frozenset(changed)):
                    waker.changed.set()
        except Exception:  # no inotify, too many watches: these readers poll instead
            for waker in self._wakers_in(folders):
                waker.polling = True
                waker.changed.set()


WATCH = FolderWatch()


class RunReader:
    """Reads one run until closed: a view after every change or tick, older lines indexed in between."""

    def __init__(self, run: RunPaths, make_feed: Callable[[RunPaths], RunFeed] = RunFeed, steered: bool = True):
        self.run_paths = run
        self.make_feed = make_feed
        self.steered = steered
        self.waker = Waker(run.root)

    @property
    def closed(self) -> bool:
        return self.waker.stop.is_set()

    def run(self, post: Callable[[RunView], None]) -> None:
        feed = self.make_feed(self.run_paths)
        try:
            if self.closed:
                return
            view = feed.view(warnings=False)  # the first frame; the warnings follow in the next view
            post(view)
            read_files = True
            while not self.closed:
                # with no trainer alive and no file changed, only the machine figures can have moved
                view = feed.view() if read_files else feed.with_fresh_system(view)
                post(view)
                if feed.index_some() or view.indexing:
                    read_files = True
                    continue  # index on, then show the whole run; new lines are still read between chunks
                alive = view.status.pid is not None  # a status has a pid while its trainer lives
                tick = self.tick(alive)
                changed = self.waker.wait(None if tick is None else tick - time.monotonic() % tick)  # on the tick's multiples: runs wake together
                read_files = changed or alive
        finally:
            self.waker.close()

    def tick(self, alive: bool) -> Optional[float]:
        """Seconds between reads without a file change; None: only a file change wakes the reader."""
        if self.steered:
            return TICK_S if alive else IDLE_TICK_S
        return COMPARED_TICK_S if alive else None

    def set_steered(self, steered: bool) -> None:
        """Tick as the steered run's reader or a compared one's from now on (reading once at once, if
        that changes)."""
        if steered != self.steered:
            self.steered = steered
            self.waker.changed.set()

    def close(self) -> None:
        self.waker.close()
