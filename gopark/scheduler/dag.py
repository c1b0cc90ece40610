"""The DAG scheduler: stages cut at shuffles, tasks, retries, lost map outputs.

Policy. An action runs a job on its RDD. The job's final stage is the narrow
lineage under that RDD; every shuffle under it is a map stage, shared by all
jobs over the same shuffle: a map stage whose outputs all exist is skipped. A
stage runs when all its parent map stages have their outputs. Each partition
of a running stage is one task; the backend (local, process, Mesos) runs it
where its preferred locations say when it can. A failed task runs again until
it has failed ``max_failures`` times, then the job fails with JobError. A task
whose worker died is a failed task. A reducer that cannot read a map output
reports FetchFailed naming every output it found gone: those outputs (if
still the ones it was given) are marked lost, the map stage runs again for
what is missing, and the reduce stage resumes after it; a stage that loses
outputs more than ``max_failures`` times fails the job.

This class is both layers of Spark's split: the DAG part (stages, shuffle
outputs, fetch failures) and the task-set part (attempt counts, locality
preferences handed to the backend); the latter is ``_launch``,
``_handle_failure`` and ``attempts``.

State. One thread owns it: the one running the job (``run_job`` blocks on
``events``). Backends only ``post()`` events; each kind has one ``_handle_`` (and ``("raise", exc)``, which
the Context posts for a SIGTERM whose exception Python dropped, is raised in the job's thread; ``("run",
run)``, local mode's task, runs in it and its end is handled at once). A job that fails or is interrupted
counts the ends of its tasks that come anyway (their cached partitions are kept: their accumulator
updates must count).

    across jobs (a Context's life):
      shuffle_outputs: {shuffle_id: [location | None] per map partition}
      shuffle_stages:  {shuffle_id: Stage}, held weakly: a job holds its stages; one made again for a
                       later job finds its outputs (and is skipped when they are all there)
      cache_locs:      {(rdd_id, split): worker_id}
      cached:          {rdd_id: (weak reference, generation)} the cached RDDs of the stages run;
                       one gone, or unpersisted, is dropped before the next job (its partitions:
                       files by the backend, workers' copies by the live list each task carries:
                       a copy it lacks, or of another generation, is dropped; so a task of a stage
                       launched before a cached RDD was noted may drop one: the disk copy is read)
      _live_cached:    [[rdd_id, generation], ...] of cached, sorted: what each task carries
      _path:           (sys.path as last seen, the workers' path made of it) when it changed since the
                       Context started its workers (with the path then): what each task carries, else None
      _cancelled:      {task_id: (shuffle_id | None, split)} the tasks the last failed or interrupted job
                       left out: one that ends after all is counted (``_handle_late_end``)
      unwanted:        shuffle ids whose ShuffleDependency is gone (its RDD gone, or checkpointed: the
                       lineage cut), appended by its finalizer from any thread: dropped with their
                       outputs before the next job (Spark's ContextCleaner)
    per job (``Job``):
      waiting:  set[Stage]                 parents not ready yet
      running:  set[Stage]
      pending:  {stage_id: {partition}}    no output / result yet
      launched: {stage_id: {partition}}    a task is out for it
      tasks:    {task_id: Task}            out, not answered
      attempts: {(stage_id, partition): failures}
      fetch_failures: {stage_id: rounds of lost map outputs}
      results:  {partition: value}         of the final stage
      passed:   results handed to ``on_result`` so far, in partition order
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import queue
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from gopark import actions, ops, registry, serialize, shared
from gopark.errors import JobError, job_error
from gopark.progress import Progress
from gopark.rdd import RDD, ShuffleDependency, call_site, lineage, lineage_to_wire

log = logging.getLogger("gopark.scheduler")


class Backend(Protocol):
    """What runs tasks: ``submit`` one, and post ``("end", tid, result, worker)`` or
    ``("lost", tid, reason, worker)`` to the scheduler when it is done; ``("worker_lost",
    worker, files_url)`` when a worker's cached partitions and the map outputs served at
    ``files_url`` are gone (a lost Mesos executor). One that runs tasks in the scheduler's own
    thread (local mode) posts ``("run", run)`` instead: the scheduler calls ``run(hold)`` (an
    ``ExitStack`` it closes once it has handled the end) for the task's end event, or None."""

    def submit(self, tid: int, payload: bytes, preferred: list[str]) -> None: ...

    def cancel(self, tids: list[int]) -> None: ...

    def stop(self) -> None: ...

    def drop_shuffles(self, shuffle_ids: list[int]) -> None:
        """These shuffles are no longer wanted (their dependency is gone): remove their map outputs' files."""

    def drop_cached(self, rdd_ids: list[int]) -> None:
        """These RDDs' cached partitions are no longer wanted (gone or unpersisted): remove their files."""


@dataclasses.dataclass(eq=False)
class Stage:
    id: int
    rdd: RDD
    parents: list[Stage]
    dep: ShuffleDependency | None       # set for a map stage
    partitions: list[int]
    name: str

    @property
    def is_map(self) -> bool:
        return self.dep is not None


@dataclasses.dataclass
class Task:
    tid: int
    stage: Stage
    split: int
    attempt: int


@dataclasses.dataclass
class Job:
    final: Stage
    action: list
    waiting: set[Stage] = dataclasses.field(default_factory=set)
    running: set[Stage] = dataclasses.field(default_factory=set)
    pending: dict[int, set[int]] = dataclasses.field(default_factory=dict)
    launched: dict[int, set[int]] = dataclasses.field(default_factory=dict)
    tasks: dict[int, Task] = dataclasses.field(default_factory=dict)
    attempts: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict)
    fetch_failures: dict[int, int] = dataclasses.field(default_factory=dict)
    results: dict[int, Any] = dataclasses.field(default_factory=dict)
    on_result: Callable[[Any], None] | None = None
    passed: int = 0
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or len(self.results) == len(self.final.partitions)


class DAGScheduler:
    """Plans a job's stages and drives them to the end through a backend."""

    def __init__(self, max_failures: int, progress: Progress, broadcasts: shared.BroadcastBook | None = None) -> None:
        # in C (no lock of Python code for a signal handler's exception to leave taken: Context.stop
        # posts here, so a SIGTERM that struck inside a put of a task's result hung it, in local mode)
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.unwanted: collections.deque[int] = collections.deque()
        self._watched: set[int] = set()
        self.broadcasts = broadcasts       # the Context's live ones, that each task carries
        self.backend: Backend | None = None
        self.max_failures = max_failures
        self.progress = progress
        self.shuffle_outputs: dict[int, list[dict | None]] = {}
        self.shuffle_stages: weakref.WeakValueDictionary[int, Stage] = weakref.WeakValueDictionary()
        self.cache_locs: dict[tuple[int, int], str] = {}
        self.cached: dict[int, tuple[weakref.ref, int]] = {}
        self._live_cached: list[list[int]] = []
        self._started_path = list(sys.path)
        self._path: tuple[list[str], list[str]] | None = None
        self._generations = itertools.count(1)   # an RDD cached again after it was dropped: a new one
        self._counted_maps: dict[int, set[int]] = {}     # map tasks whose accumulator updates counted, by shuffle
        # the tasks the last job that failed or was interrupted left out: tid -> (shuffle id of a map task, split)
        self._cancelled: dict[int, tuple[int | None, int]] = {}
        self._ids = itertools.count()
        self._tids = itertools.count()
        self._job_lock = threading.Lock()
        self.job: Job | None = None
        self.stopped = False     # the Context stopped: a job running (in another thread) ends, none starts

    def stop(self) -> None:
        """The Context is stopping (any thread): the job running ends with an error at its next event,
        launching nothing more; a job started afterwards fails at once."""
        self.stopped = True
        self.post(("stopped",))

    def post(self, event: tuple) -> None:
        """Called by backends, from any thread."""
        self.events.put(event)

    # -- planning -------------------------------------------------------------------
    def _shuffle_deps(self, rdd: RDD) -> list[ShuffleDependency]:
        """The shuffles right under ``rdd``'s narrow lineage (the edges to its parent stages). Each is
        watched: when its dependency is gone (the RDD that shuffles is gone, or checkpointed), no job can
        need the shuffle again (see ``unwanted``)."""
        deps: dict[int, ShuffleDependency] = {}
        seen: set[int] = set()
        stack = [rdd]
        while stack:
            r = stack.pop()
            if r.id in seen:
                continue
            seen.add(r.id)
            for d in r._deps():
                if isinstance(d, ShuffleDependency):
                    deps[d.shuffle_id] = d
                    if d.shuffle_id not in self._watched:
                        self._watched.add(d.shuffle_id)
                        weakref.finalize(d, self.unwanted.append, d.shuffle_id)
                else:
                    stack.append(d)
        return list(deps.values())

    def _parent_stages(self, rdd: RDD) -> list[Stage]:
        return [self._map_stage(d) for d in self._shuffle_deps(rdd)]

    def _map_stage(self, dep: ShuffleDependency) -> Stage:
        """Mutates: shuffle_stages, shuffle_outputs. The stage of ``dep``, made (with its ancestors) unless a
        job still holds it.

        Without recursion: an iterative job of a thousand rounds is a chain of
        two thousand stages.
        """
        made: dict[int, Stage] = {}     # held here: shuffle_stages holds them weakly
        stack: list[tuple[ShuffleDependency, bool]] = [(dep, False)]
        while stack:
            d, parents_made = stack.pop()
            if d.shuffle_id in made:
                continue
            if (known := self.shuffle_stages.get(d.shuffle_id)) is not None:
                made[d.shuffle_id] = known
                continue
            below = self._shuffle_deps(d.rdd)
            if not parents_made:
                stack.append((d, True))
                stack.extend((p, False) for p in below if p.shuffle_id not in made)
                continue
            rdd = d.rdd
            made[d.shuffle_id] = self.shuffle_stages[d.shuffle_id] = Stage(
                next(self._ids), rdd, [made[p.shuffle_id] for p in below], d,
                list(range(rdd.num_partitions)), d.site or f"shuffle of {rdd.kind}")
            # made again (the last job's stage is gone), it finds the outputs its shuffle has
            self.shuffle_outputs.setdefault(d.shuffle_id, [None] * rdd.num_partitions)
        return made[dep.shuffle_id]

    def _missing(self, stage: Stage) -> list[int]:
        if stage.dep is None:
            return [p for p in stage.partitions if p not in self.job.results]  # type: ignore[union-attr]
        outputs = self.shuffle_outputs[stage.dep.shuffle_id]
        return [p for p in stage.partitions if outputs[p] is None]

    # -- running a job ----------------------------------------------------------------
    def run_job(self, rdd: RDD, action: list, partitions: list[int],
                on_result: Callable[[Any], None] | None = None) -> list[Any]:
        """Run ``action`` on ``partitions`` of ``rdd``; their results in order. With ``on_result``, each
        result is handed to it instead (then None in the list), in the order of ``partitions``, as soon as
        it and those before it have come: the caller folds them while later tasks still run."""
        with self._job_lock:
            if self.stopped:
                raise _stopped_error()
            shared.forget_stale_task_state()    # left by a task a signal ended, in local mode
            ops.forget_ctrl_c()
            self._forget_unwanted()
            self._forget_uncached()
            parents = self._parent_stages(rdd)       # numbered first, as in Spark: stage 0 runs first
            site = call_site()      # the action the app called, and where: "collect at app.py:14", as Spark's
            final = Stage(next(self._ids), rdd, parents, None, partitions,
                          site if " at " in site else f"{action[0]} at {rdd.site.partition(' at ')[2] or rdd.kind}")
            self.job = job = Job(final, action, on_result=on_result)
            self.progress.job_started()
            log.debug("job: %s on %d partitions, final stage %d, parent stages %s", final.name,
                      len(partitions), final.id, [p.id for p in final.parents])
            try:
                self._drain()
                if partitions:
                    self._submit_stage(final)
                while not job.done:
                    self._handle(self.events.get())
                self._settle_queued(ended=False)    # a dropped signal's exception posted as the last task ran
                if job.error is None:
                    self.progress.stage_done(final.id)
            finally:
                with ops.signals_deferred():    # a second Ctrl-C must not cut this short
                    self.job = None
                    if job.tasks:   # the job failed or was interrupted: its tasks still out are not wanted
                        self._cancelled = {tid: (t.stage.dep.shuffle_id if t.stage.dep is not None else None,
                                                 t.split) for tid, t in job.tasks.items()}  # (not the lineage)
                        self.backend.cancel(list(job.tasks))
                        self._settle_queued(ended=True)
                    self.progress.job_ended()
            log.debug("job: %s %s", final.name, "failed" if job.error else "done")
            if job.error is not None:
                error = job.error
                del job, final, parents   # the error's traceback holds this frame: not the stages (see shuffle_stages)
                try:
                    raise error
                finally:          # nor the error itself: a cycle that only a gc pass would free, with the lineage
                    del error
            return [job.results[p] for p in partitions]

    def _forget_unwanted(self) -> None:
        """Mutates: shuffle_stages, shuffle_outputs, unwanted. Drop the shuffles whose dependency is gone,
        and have the backend remove their map outputs' files (by shuffle: also those of attempts the
        scheduler never registered, which ended after their job)."""
        dropped: list[int] = []
        while self.unwanted:
            shuffle_id = self.unwanted.popleft()
            self._watched.discard(shuffle_id)
            self.shuffle_stages.pop(shuffle_id, None)
            self._counted_maps.pop(shuffle_id, None)
            self.shuffle_outputs.pop(shuffle_id, None)
            dropped.append(shuffle_id)
            log.debug("shuffle %d dropped: its dependency is gone (its RDD gone, or checkpointed)", shuffle_id)
        if dropped:
            self._clean_up("drop_shuffles", dropped, "the map outputs of dropped shuffles")

    def _forget_uncached(self) -> None:
        """Mutates: cached, cache_locs. Drop the cached RDDs that are gone or unpersisted: the backend
        removes their partitions' files; workers drop their copies when a task's live list lacks them."""
        gone = {i for i, (ref, _) in self.cached.items() if (r := ref()) is None or not r.is_cached}
        if not gone:
            return
        for i in gone:
            del self.cached[i]
        self._list_live_cached()
        self.cache_locs = {k: w for k, w in self.cache_locs.items() if k[0] not in gone}
        self._clean_up("drop_cached", sorted(gone), "the cached partitions of dropped RDDs")
        log.debug("cached RDDs %s dropped: gone or unpersisted", sorted(gone))

    def _clean_up(self, method: str, what: list, described: str) -> None:
        """Have the backend remove ``what`` (``drop_shuffles`` or ``drop_cached``); a failure is logged:
        cleaning up must not fail the app's next job."""
        if self.backend is None:
            return
        try:
            getattr(self.backend, method)(what)
        except Exception as exc:   # noqa: BLE001
            log.warning("could not remove %s: %s", described, exc)

    def _drain(self) -> None:
        """Events that came between jobs (a lost executor's outputs), before planning the next."""
        while True:
            try:
                self._handle(self.events.get_nowait())
            except queue.Empty:
                return

    def _settle_queued(self, ended: bool) -> None:
        """The events queued now, as a job ends. Once it has ended (``ended``: it failed or was interrupted,
        ``self.job`` is None), its tasks' ends are counted (see ``_handle_late_end``: the accumulators then
        say what its finished tasks did); before (it is done), a dropped signal's exception is raised (see
        ``_handle``). The rest wait for the next job, in their order."""
        others, error = [], None
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if ended and event[0] in ("end", "lost"):
                self._handle(event)
            elif not ended and event[0] == "raise" and error is None:
                error = event[1]
            else:
                others.append(event)
        for event in others:
            self.events.put(event)
        if error is not None:
            raise error

    def _handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == "end":
            self._handle_end(*event[1:])
        elif kind == "lost":
            self._handle_lost(*event[1:])
        elif kind == "worker_lost":
            self._handle_worker_lost(*event[1:])
        elif kind == "stopped":
            if self.job is not None and self.job.error is None:
                self.job.error = _stopped_error()
        elif kind == "run":         # a task to run in this thread, now (local mode): its end is handled at once
            with contextlib.ExitStack() as hold:     # SIGINT, SIGTERM held from its success to its end's handling
                end = event[1](hold)
                if end is not None:
                    self._handle(end)
        elif kind == "raise":       # an exception the driver's thread must raise (a dropped SIGTERM's)
            raise event[1]
        else:
            raise ValueError(f"unknown scheduler event {kind!r}")

    def _submit_stage(self, stage: Stage) -> None:
        """Mutates: waiting/running. Run ``stage`` now if its parents are ready, else them first."""
        job = self.job
        assert job is not None
        stack = [stage]
        while stack:                      # not recursive: stage chains can be long
            stage = stack.pop()
            if stage in job.running or stage in job.waiting:
                continue
            missing_parents = [p for p in stage.parents if self._missing(p)]
            if missing_parents:
                log.debug("stage %d (%s) waits for stages %s", stage.id, stage.name,
                          [p.id for p in missing_parents])
                job.waiting.add(stage)
                stack.extend(missing_parents)
                continue
            self._run_stage(stage)

    def _run_stage(self, stage: Stage) -> None:
        """Mutates: running, pending. Launch the tasks of ``stage`` whose output is missing."""
        job = self.job
        assert job is not None
        todo = self._missing(stage)
        if not todo:
            self._stage_done(stage)
            return
        log.debug("stage %d (%s) runs %d of its %d tasks", stage.id, stage.name, len(todo), len(stage.partitions))
        self._note_cached(stage.rdd)
        job.running.add(stage)
        job.pending[stage.id] = set(todo)
        launched = job.launched.setdefault(stage.id, set())
        self.progress.stage_started(stage.id, stage.name, len(stage.partitions), len(stage.partitions) - len(todo))
        for p in todo:
            if p not in launched:
                self._launch(stage, p)

    def _note_cached(self, rdd: RDD) -> None:
        """Mutates: cached, _live_cached. Note the cached RDDs of ``rdd``'s narrow lineage (what a stage's
        tasks compute), so that the tasks launched from now on list them as live."""
        new = [r for r in lineage(rdd, across_shuffles=False) if r.is_cached and r.id not in self.cached]
        for r in new:
            self.cached[r.id] = (weakref.ref(r), next(self._generations))
        if new:
            self._list_live_cached()

    def _list_live_cached(self) -> None:
        """Mutates: _live_cached, what each task carries: ``cached`` as sorted [id, generation] pairs."""
        self._live_cached = sorted([i, g] for i, (_, g) in self.cached.items())

    def _launch(self, stage: Stage, split: int) -> None:
        """Mutates: tasks, launched. Hand one task to the backend."""
        job = self.job
        assert job is not None and self.backend is not None
        if self.stopped:        # nothing runs tasks any more (local mode: not this thread either)
            job.error = job.error or _stopped_error()
            return
        tid = next(self._tids)
        attempt = job.attempts.get((stage.id, split), 0)
        task = Task(tid, stage, split, attempt)
        wire: dict[str, Any] = {"tid": tid, "stage": stage.id, "split": split, "attempt": attempt,
                                "lineage": lineage_to_wire(stage.rdd, split, self.shuffle_outputs),
                                "broadcasts": self.broadcasts.for_task() if self.broadcasts is not None else None,
                                "live_cached": self._live_cached}
        path = self._workers_path()
        if path is not None:
            wire["path"] = path
        if stage.dep is not None:
            wire["kind"] = "map"
            wire["dep"] = stage.dep.to_wire()
        else:
            wire["kind"] = "result"
            wire["action"] = job.action
        payload = serialize.packb(wire, "a task")
        job.tasks[tid] = task
        job.launched.setdefault(stage.id, set()).add(split)
        self.backend.submit(tid, payload, self._preferred(stage.rdd, split))

    def _workers_path(self) -> list[str] | None:
        """The driver's ``sys.path`` as workers get it (``registry.worker_path``), once the app changed it
        after its Context started them (a plugin folder put on it later): the task's worker adds what it
        lacks. None while unchanged."""
        if sys.path == self._started_path:
            return None
        if self._path is None or self._path[0] != sys.path:
            self._path = (list(sys.path), registry.worker_path())
        return self._path[1]

    def _preferred(self, rdd: RDD, split: int) -> list[str]:
        """Where a task would best run: a worker holding a cached partition, else the data's hosts."""
        stack, seen = [(rdd, split)], set()
        while stack:
            r, s = stack.pop()
            if (r.id, s) in seen:
                continue
            seen.add((r.id, s))
            if r.is_cached and (r.id, s) in self.cache_locs:
                return [self.cache_locs[(r.id, s)]]
            stack.extend(r._parent_splits(s))
        return rdd.preferredLocations(split)

    def _handle_end(self, tid: int, payload: bytes, worker: str) -> None:
        job = self.job
        task = job.tasks.pop(tid, None) if job else None
        if task is None:
            self._handle_late_end(tid, payload, worker)
            return
        job.launched.get(task.stage.id, set()).discard(task.split)
        result = serialize.unpackb(payload)
        if not result["ok"]:
            self._handle_failure(task, result)
            return
        stage = task.stage
        if stage.id not in job.pending or task.split not in job.pending[stage.id]:
            return  # a partition already done by another attempt
        for rdd_id, split in result["cached"]:
            self.cache_locs[(rdd_id, split)] = worker
        self._count_updates(result["acc"], stage.dep.shuffle_id if stage.dep is not None else None, task.split, job)
        job.pending[stage.id].discard(task.split)
        if stage.dep is not None:
            self.shuffle_outputs[stage.dep.shuffle_id][task.split] = serialize.unpackb(result["v"])
        else:
            value = result["v"]
            with serialize.gc_paused():     # a result of many records, in a driver that may hold many more
                job.results[task.split] = (actions.decode_stream(job.action[0], value) if result["stream"]
                                           else serialize.unpackb(value))
            self._pass_results(job)
        self.progress.task_done(stage.id)
        if not job.pending[stage.id] and not job.launched.get(stage.id):
            self._stage_done(stage)

    def _handle_late_end(self, tid: int, payload: bytes, worker: str) -> None:
        """Mutates: cache_locs, the accumulators. A task its job had given up on (it failed, or Ctrl-C
        interrupted it) ended after all, or its end was still queued when the job ended: what it cached is
        kept, so its accumulator updates count (a map task's once, as always), or the partition read from
        that cache later would never count them."""
        if tid not in self._cancelled:
            return  # a task of an earlier job, whose partition another attempt did
        shuffle_id, split = self._cancelled.pop(tid)
        result = serialize.unpackb(payload)
        if not result["ok"]:
            return
        for rdd_id, cached_split in result["cached"]:
            self.cache_locs[(rdd_id, cached_split)] = worker
        if shuffle_id is None or shuffle_id in self.shuffle_outputs:     # (not a shuffle dropped since)
            self._count_updates(result["acc"], shuffle_id, split, None)

    def _count_updates(self, updates: dict[str, Any], shuffle_id: int | None, split: int, job: Job | None) -> None:
        """Mutates: _counted_maps, the accumulators. A succeeded task's accumulator updates (``job``: see
        ``_merge_accumulators``); a map task run again because its output was lost made the same updates:
        they count once."""
        counted = self._counted_maps.setdefault(shuffle_id, set()) if shuffle_id is not None else None
        if counted is None or split not in counted:
            self._merge_accumulators(updates, job)
        if counted is not None:
            counted.add(split)

    @staticmethod
    def _pass_results(job: Job) -> None:
        """Mutates: results, passed. Hand ``on_result`` the results now next in partition order."""
        if job.on_result is None:
            return
        order = job.final.partitions
        while job.passed < len(order) and order[job.passed] in job.results:
            split = order[job.passed]
            value, job.results[split] = job.results[split], None
            job.passed += 1
            job.on_result(value)

    def _merge_accumulators(self, updates: dict[str, Any], job: Job | None) -> None:
        """Mutates: the accumulators; ``job.error`` if one's merge function fails on an update of its task
        (the job fails, as a task would: an update is never dropped silently); with no job (a task of one
        that has ended, see ``_handle_late_end``), a warning: the job running now is not that task's."""
        for key, delta in updates.items():
            acc = shared.find_accumulator(key)
            if acc is None:     # a Context's one the app let go (while a task of an earlier job ran): not read
                (log.debug if key.startswith("u:") else log.warning)(
                    "an update of accumulator %s that this driver does not know", key)
                continue
            try:
                acc.merge_update(delta)
            except Exception as exc:  # noqa: BLE001  # the app's merge function, run here
                func = registry.func_label(acc.merge_ref)
                which = f"accumulator {key[2:]!r}" if key.startswith("n:") else "an accumulator"   # named, or not
                failed = f"{type(exc).__name__}: {exc}" + (f" (in {func})" if func else "")
                if job is None:
                    log.warning("%s: merging the update of a task of an ended job failed in the driver: %s",
                                which, failed)
                elif job.error is None:
                    job.error = job_error(f"{which}: merging a task's update failed in the driver: {failed}",
                                          type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)),
                                          func)

    def _stage_done(self, stage: Stage) -> None:
        """Mutates: running, waiting. Start the waiting stages whose parents are now ready."""
        job = self.job
        assert job is not None
        log.debug("stage %d (%s) done", stage.id, stage.name)
        job.running.discard(stage)
        if stage is not job.final:
            if self._missing(stage):   # outputs were lost meanwhile: run the rest
                self._submit_stage(stage)
                return
            self.progress.stage_done(stage.id)
        for waiting in [s for s in job.waiting if not any(self._missing(p) for p in s.parents)]:
            job.waiting.discard(waiting)
            self._submit_stage(waiting)

    def _handle_lost(self, tid: int, reason: str, worker: str) -> None:
        job = self.job
        task = job.tasks.pop(tid, None) if job else None
        if task is None:
            self._cancelled.pop(tid, None)
            return
        job.launched.get(task.stage.id, set()).discard(task.split)
        # where in the task its worker died is not known: no function is blamed
        self._handle_failure(task, {"type": "TaskLost", "msg": reason, "tb": "", "func": None, "fetch": None,
                                    "lost": True})

    def _handle_worker_lost(self, worker: str, files_url: str | None) -> None:
        """Mutates: shuffle_outputs, cache_locs. Forget what ``worker`` held.

        Stages needing its map outputs run those map tasks again: at once if
        the stage is being planned, or when a reducer reports the fetch failure.
        """
        self.cache_locs = {k: w for k, w in self.cache_locs.items() if w != worker}
        if not files_url:
            return
        prefix = files_url + "/"
        for shuffle_id, outputs in self.shuffle_outputs.items():
            lost = [m for m, loc in enumerate(outputs) if loc and loc.get("url", "").startswith(prefix)]
            for m in lost:
                outputs[m] = None
            if lost:
                log.info("shuffle %d: map outputs %s were served at %s, which is gone", shuffle_id, lost, files_url)

    def _handle_failure(self, task: Task, result: dict) -> None:
        """Mutates: attempts, or the lost map output and the stages to run again."""
        job = self.job
        assert job is not None
        stage = task.stage
        if result.get("fetch"):
            self._handle_fetch_failed(task, result["fetch"])
            return
        key = (stage.id, task.split)
        job.attempts[key] = job.attempts.get(key, 0) + 1
        log.info("task %d of stage %d failed (%d): %s: %s", task.split, stage.id, job.attempts[key],
                 result["type"], result["msg"])
        if job.attempts[key] < self.max_failures:
            if stage not in job.waiting:   # else its stage, waiting for lost map outputs, relaunches it
                self._launch(stage, task.split)
            return
        # no frame of a registered function: blame the stage's last one (a builtin raised), unless
        # the input itself could not be read, or the action refused a record
        func = result["func"] or (None if result.get("input") or result.get("action") or result.get("lost")
                                  else _stage_func(stage, job.action))
        times = "once" if job.attempts[key] == 1 else f"{job.attempts[key]} times"
        on = f" on {result['host']}" if result.get("host") else ""       # (a cluster's host)
        job.error = job_error(
            f"task {task.split} of stage {stage.id} ({stage.name}) failed {times}; "
            f"last error{on}: {result['type']}: {result['msg']}" + (f" (in {func})" if func else ""),
            result["type"], result["msg"], result["tb"], func)

    def _handle_fetch_failed(self, task: Task, fetch: list) -> None:
        """Mutates: the lost map outputs, fetch_failures, waiting. Run the lost map tasks, then this stage."""
        job = self.job
        assert job is not None
        shuffle_id, missing = fetch
        outputs = self.shuffle_outputs.get(shuffle_id, [])
        lost = [m for m, path in missing if outputs[m] is not None and outputs[m]["path"] == path]
        for m in lost:            # an output registered since the reducer started is not lost
            outputs[m] = None
        log.info("shuffle %d: map outputs %s lost; running those map tasks again", shuffle_id, lost)
        stage = task.stage
        # one count a round: the outputs a removal (a lost disk, executor) takes are seen one reducer at a
        # time, while the stage already waits for those seen first to be made again
        if lost and stage not in job.waiting:
            job.fetch_failures[stage.id] = job.fetch_failures.get(stage.id, 0) + 1
        if job.fetch_failures.get(stage.id, 0) > self.max_failures:
            job.error = job_error(f"stage {stage.id} ({stage.name}) lost its map outputs "
                                  f"{job.fetch_failures[stage.id]} times", "FetchFailed",
                                  "map outputs keep being lost", "", None)
            return
        job.running.discard(stage)
        job.waiting.add(stage)
        self._submit_stage(self.shuffle_stages[shuffle_id])


def _stopped_error() -> JobError:
    return JobError("job cancelled: the Context was stopped while it ran (Context.stop(), from another thread "
                    "or on a signal)")


def _stage_func(stage: Stage, action: list) -> str | None:
    """The app's function a failing stage applies last, when no frame of a registered one was seen; None
    when that is one of gopark's own (``distinct`` keys its records by one: the stage's name tells)."""
    labels = [registry.func_label(part) for part in reversed(action)] if stage.dep is None else []
    label = next(filter(None, labels), None) or registry.func_label(getattr(stage.rdd, "f_ref", None))
    return None if label is None or label.startswith(registry.OWN_PREFIX) else label
