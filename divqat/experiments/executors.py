"""Executors of an experiment grid: the same job graph run one job after another in this
process (:class:`SequentialExecutor`, the default) or as Ray tasks on a local instance or a
cluster (:class:`RayExecutor`).

A *job* is one cell of the grid (a victim or a misinformation model to train, an attack cell to
run) with the keys of the jobs it waits for. Jobs come in topological order: teachers, then
students and misinformation models, then attack cells.
An executor calls ``work(job, dep_outcomes) -> Outcome`` once per job, after every job in
``job.deps`` has an outcome, and reports ``on_start(job)`` and ``on_done(job, outcome)`` to the
driver. ``work`` does the cell and its caching (:class:`divqat.experiments.runner.CellWorker`);
executors share no state but the output directory it writes to. An executor also tells the
runner ``threads`` (torch threads per cell; None: leave them) and ``in_process`` (whether cells
run in the driver's process, where their own progress bars may show).
"""
import contextlib
import traceback
from dataclasses import dataclass

DONE, CACHED, FAILED, SKIPPED = "done", "cached", "failed", "skipped"


@dataclass(frozen=True)
class Job:
    """One cell to run: ``needs`` must have succeeded (else the job is skipped); ``after`` only
    orders the job after others (e.g. a smaller budget after the larger one whose transfer set
    it reuses)."""

    key: str
    kind: str  # "victim" | "misinformation" | "attack"
    label: str
    cell: object
    needs: tuple = ()
    after: tuple = ()

    @property
    def deps(self):
        return self.needs + self.after


@dataclass(frozen=True)
class Outcome:
    """What became of a job: ``done`` (computed here), ``cached`` (finished before, by this or
    another driver), ``failed`` (with its error) or ``skipped`` (a job it needs failed)."""

    status: str
    error: str = ""
    details: str = ""  # the traceback of a failure

    @property
    def ok(self):
        return self.status in (DONE, CACHED)

    @classmethod
    def failure(cls, exc):
        return cls(FAILED, "".join(traceback.format_exception_only(exc)).strip(),
                   "".join(traceback.format_exception(exc)))


def _check_cpus(cpus):
    if not (isinstance(cpus, int) and cpus >= 1):
        raise ValueError(f"--cpus-per-cell must be an int >= 1, got {cpus!r}")


class SequentialExecutor:
    """Every job in this process, in order. ``threads``: torch threads per cell (None: leave the
    process's setting)."""

    in_process = True  # cells may show their own progress bars

    def __init__(self, threads=None):
        if threads is not None:
            _check_cpus(threads)
        self.threads = threads

    def run(self, jobs, work, on_start, on_done):
        outcomes = {}
        for job in jobs:
            on_start(job)
            outcomes[job.key] = work(job, [outcomes[d] for d in job.deps])
            on_done(job, outcomes[job.key])


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def _run_task(work, job, events, *dep_outcomes):
    """A Ray task: announce the start to the driver, then do the job."""
    events.put(job.key)
    return work(job, list(dep_outcomes))


class RayExecutor:
    """Each job a Ray task declaring ``cpus`` CPUs (also its torch thread count) and ``gpus``
    GPUs, with the jobs it waits for passed as ObjectRefs. A task whose worker process dies is
    retried up to ``max_retries`` times (a cell's record is written atomically and claimed, so a
    retry starts clean). ``address``: an existing cluster (``ray start --head`` prints it);
    None: the instance this process already joined, else a new local one, shut down at the end."""

    in_process = False

    def __init__(self, address=None, cpus=1, gpus=0, max_retries=3):
        _check_cpus(cpus)
        if not gpus >= 0:
            raise ValueError(f"--gpus-per-cell must be >= 0, got {gpus!r}")
        self.address, self.cpus, self.gpus, self.max_retries = address, cpus, gpus, max_retries
        self.threads = cpus

    @contextlib.contextmanager
    def _connected(self, ray):
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level="warning")
            except ConnectionError as err:
                raise ValueError(f"--address {self.address}: cannot connect to a Ray cluster ({err})") from None
        try:
            self._check_resources(ray.cluster_resources())
            yield
        finally:
            if started:
                ray.shutdown()

    def _check_resources(self, total):
        for name, asked in (("CPU", self.cpus), ("GPU", self.gpus)):
            if asked and total.get(name, 0) < asked:
                raise ValueError(f"--{name.lower()}s-per-cell {asked}: the Ray cluster has {total.get(name, 0):g} {name}s")

    def run(self, jobs, work, on_start, on_done):
        ray = import_ray()
        from ray.util.queue import Queue

        with self._connected(ray):
            events = Queue(actor_options={"num_cpus": 0})
            task = ray.remote(_run_task).options(num_cpus=self.cpus, num_gpus=self.gpus,
                                                 max_retries=self.max_retries)
            work_ref = ray.put(work)
            refs, pending = {}, {}
            for job in jobs:
                refs[job.key] = task.remote(work_ref, job, events, *(refs[d] for d in job.deps))
                pending[refs[job.key]] = job
            try:
                self._collect(ray, pending, events, {job.key: job for job in jobs}, on_start, on_done)
            finally:
                for ref in pending:  # interrupted: the cluster's workers stop too
                    ray.cancel(ref)
                ray.kill(events.actor)

    @staticmethod
    def _collect(ray, pending, events, by_key, on_start, on_done):
        """Report started and finished tasks until none is pending."""
        finished = set()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.25)
            for key in events.get_nowait_batch(events.qsize()):
                if key not in finished:
                    on_start(by_key[key])
            for ref in ready:
                job = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # worker lost beyond its retries, or a dependency's
                    outcome = Outcome.failure(exc)
                finished.add(job.key)
                on_done(job, outcome)


def make_executor(name, address=None, cpus=None, gpus=None, device="cpu"):
    """The executor of the ``--executor``/``--address``/``--cpus-per-cell``/``--gpus-per-cell``
    options. A Ray cell asks for one GPU by default when the config's device is CUDA."""
    if name == "sequential":
        for option, value in (("--address", address), ("--gpus-per-cell", gpus)):
            if value is not None:
                raise ValueError(f"{option} needs --executor ray")
        return SequentialExecutor(threads=cpus)
    if name == "ray":
        if gpus is None:
            gpus = 1 if str(device).startswith("cuda") else 0
        executor = RayExecutor(address=address, cpus=1 if cpus is None else cpus, gpus=gpus)
        import_ray()  # installed? (checked before any work)
        return executor
    raise ValueError(f"--executor must be sequential or ray, got {name!r}")
