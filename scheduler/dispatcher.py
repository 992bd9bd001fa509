"""The dispatcher: decides what runs where, and records how each run ends.

One ``asyncio.Semaphore`` per device holds its slots. A loop per device waits
for a free slot, claims the next jobs (the store orders them: priority, owner
round robin, age) and runs each as an attempt through the executor. While an
attempt runs, its lease is renewed by heartbeat and its progress is published
(throttled by the event bus) and persisted (at most every
``progress_persist_seconds``). When it ends, the store is updated under the
attempt's run number, so a run that lost its job (canceled, recovered) can
neither finish it nor publish an output.

Expired leases (a crashed server, a lost worker) are recovered at start-up
and periodically: back to queued with ``attempts + 1``, or failed after the
maximum attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import scheduler.executor as ex
from engine.errors import ContentPolicyViolation
from scheduler.events import PROGRESS, EventBus, JobEvent
from scheduler.executor import Attempt, Executor, ExecutorEvent
from scheduler.files import JobFiles
from scheduler.jobs import Job, JobError, JobStatus
from scheduler.retry import INTERNAL, RetryPolicy
from scheduler.split import SplitRun, plan_video
from scheduler.store import ProgressUpdate, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatcherSettings:
    slots: dict[str, int]
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    recovery_seconds: float = 15.0
    progress_persist_seconds: float = 1.0
    cancel_grace_seconds: float = 2.0
    default_time_limit: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    claim_batch: int = 8
    split_video: bool = True  # run long videos' segments on several slots at once


@dataclass
class _InFlight:
    job: Job
    device: str
    task: asyncio.Task | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    canceling: bool = False
    split: SplitRun | None = None

    @property
    def run(self) -> int:
        return self.job.runs


class Dispatcher:
    """Claims jobs for free device slots and runs them through an executor."""

    def __init__(
        self,
        store: Store,
        files: JobFiles,
        executor: Executor,
        bus: EventBus,
        settings: DispatcherSettings,
    ) -> None:
        self.store = store
        self.files = files
        self.executor = executor
        self.bus = bus
        self.settings = settings
        self._semaphores = {d: asyncio.Semaphore(n) for d, n in settings.slots.items()}
        self._wake = {d: asyncio.Event() for d in settings.slots}
        self._inflight: dict[str, _InFlight] = {}
        self._progress: dict[str, ProgressUpdate] = {}
        self._loops: list[asyncio.Task] = []
        self._services: list[asyncio.Task] = []
        self._claiming = 0
        self._stopping = False
        self._borrowed = dict.fromkeys(settings.slots, 0)  # slots lent to split jobs

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self.recover()
        loop = asyncio.get_running_loop()
        for device in self.settings.slots:
            self._loops.append(loop.create_task(self._device_loop(device), name=f"claim-{device}"))
        self._services = [
            loop.create_task(self._every(self.settings.heartbeat_seconds, self.heartbeat)),
            loop.create_task(self._every(self.settings.recovery_seconds, self.recover)),
            loop.create_task(
                self._every(self.settings.progress_persist_seconds, self.flush_progress)
            ),
        ]

    async def stop(self, graceful: bool = True) -> None:
        """Stop claiming. Graceful: running jobs go back to the queue uncharged.
        Not graceful: workers are killed and the store is left as a crash leaves it."""
        self._stopping = True
        for event in self._wake.values():
            event.set()
        while self._claiming:  # a claim in flight still commits: let its loop see it through
            await asyncio.sleep(0.005)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        attempts = [f.task for f in self._inflight.values() if f.task is not None]
        if graceful:
            for flight in self._inflight.values():
                if flight.split is not None:
                    flight.split.stopping = True
            await self.executor.stop()
            await asyncio.gather(*attempts, return_exceptions=True)
            await self.flush_progress()
        else:
            for task in attempts:
                task.cancel()
            await asyncio.gather(*attempts, return_exceptions=True)
            await self.executor.stop()
        for task in self._services:
            task.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        self._services = []

    def notify(self) -> None:
        """Something may be runnable now (a submit, a retry, a freed slot)."""
        for event in self._wake.values():
            event.set()

    # -- state for operators ----------------------------------------------------------

    def busy(self) -> dict[str, int]:
        """Slots in use per device (a split job's borrowed slots included)."""
        counts = dict(self._borrowed)
        for flight in self._inflight.values():
            counts[flight.device] = counts.get(flight.device, 0) + 1
        return counts

    def running_ids(self) -> set[str]:
        return set(self._inflight)

    # -- claiming ---------------------------------------------------------------------

    async def _device_loop(self, device: str) -> None:
        semaphore = self._semaphores[device]
        wake = self._wake[device]
        while not self._stopping:
            await semaphore.acquire()
            held = 1
            while held < self.settings.claim_batch and not semaphore.locked():
                await semaphore.acquire()
                held += 1
            wake.clear()
            self._claiming += 1
            try:
                jobs = await self.store.claim(device, held, self.settings.lease_seconds)
            except Exception:
                log.exception("claiming jobs for %s failed", device)
                jobs = []
                await asyncio.sleep(1.0)
            finally:
                self._claiming -= 1
            for _ in range(held - len(jobs)):
                semaphore.release()
            if self._stopping:
                for job in jobs:
                    await self.store.release(job.id, job.runs, "the server is stopping")
                    semaphore.release()
                return
            for job in jobs:
                self._launch(job, device)
            if not jobs:
                await self._idle(wake)

    async def _idle(self, wake: asyncio.Event) -> None:
        """Wait for a notification, or until the earliest backed-off job is due."""
        timeout = self.settings.recovery_seconds
        with contextlib.suppress(Exception):
            due = await self.store.next_due()
            if due is not None:
                timeout = min(timeout, max(0.02, due - self.store.clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)

    def _launch(self, job: Job, device: str) -> None:
        flight = _InFlight(job, device)
        self._inflight[job.id] = flight
        flight.task = asyncio.get_running_loop().create_task(
            self._attempt(flight), name=f"attempt-{job.id}-{job.runs}"
        )

    # -- one attempt ------------------------------------------------------------------

    async def _attempt(self, flight: _InFlight) -> None:
        job = flight.job
        released = False
        try:
            self.bus.publish(JobEvent.of_job(job))
            self.files.prepare_run(job.id, job.runs)
            outcome = await self._execute(flight)
            # The worker is free now: let the next claim share a commit with this finish.
            self._release_slot(flight.device)
            released = True
            await self._finish(flight, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease will expire and recovery will retry the job; never lose it here.
            log.exception("attempt %s of job %s failed in the dispatcher", job.runs, job.id)
        finally:
            self._inflight.pop(job.id, None)
            self._progress.pop(job.id, None)
            flight.done.set()
            if not released:
                self._release_slot(flight.device)

    async def _borrow_slot(self) -> str | None:
        """A free slot of any device, taken at once, or None (queued jobs come first:
        a device whose loop waits for a slot is never borrowed from)."""
        if self._stopping:
            return None
        for device, semaphore in self._semaphores.items():
            if not semaphore.locked():
                await semaphore.acquire()  # free: returns without waiting
                self._borrowed[device] += 1
                return device
        return None

    def _another_slot_free(self) -> bool:
        """Whether a split job would get a second slot now (its own is already held): a
        slot no attempt runs on. (A device loop may hold free permits for a moment while
        it claims; the split borrows them as they come back.)"""
        busy = self.busy()
        return any(slots > busy.get(device, 0) for device, slots in self.settings.slots.items())

    def _give_back(self, device: str) -> None:
        self._borrowed[device] -= 1
        self._release_slot(device)

    def _release_slot(self, device: str) -> None:
        self._semaphores[device].release()
        self._wake[device].set()

    async def _execute(self, flight: _InFlight) -> ExecutorEvent:
        job = flight.job
        attempt = Attempt(
            job_id=job.id,
            run=job.runs,
            attempt=job.attempts + 1,
            device=flight.device,
            kind=job.kind,
            spec=_spec_dict(job),
            job_dir=str(self.files.job_dir(job.id)),
            output=str(self.files.partial_output(job.id, job.runs, job.spec.output)),
            time_limit=job.time_limit or self.settings.default_time_limit,
        )
        if self.settings.split_video and self._another_slot_free():
            try:
                plan = await asyncio.to_thread(plan_video, attempt)
            except Exception:  # the whole-job path reports bad inputs in the usual way
                plan = None
            if plan is not None:

                async def note(event: str, detail: dict) -> None:
                    with contextlib.suppress(Exception):  # history is best effort
                        await self.store.note(job.id, job.runs, event, detail)

                flight.split = SplitRun(
                    attempt,
                    plan,
                    self.executor,
                    self._borrow_slot,
                    self._give_back,
                    lambda event: self._on_progress(job, event),
                    note,
                )
                return await flight.split.run()
        outcome: ExecutorEvent | None = None
        async for event in self.executor.run(attempt):
            if event.type == ex.PROGRESS:
                self._on_progress(job, event)
            else:
                outcome = event
        if outcome is None:
            error = JobError(INTERNAL, "the executor ended the run without a result", False)
            outcome = ExecutorEvent(job.id, job.runs, ex.FAILED, error=error)
        return outcome

    def _on_progress(self, job: Job, event: ExecutorEvent) -> None:
        self.bus.publish(
            JobEvent(
                job_id=job.id,
                owner=job.owner,
                type=PROGRESS,
                status=JobStatus.RUNNING,
                progress=event.progress,
                preview=event.preview,
            )
        )
        self._progress[job.id] = ProgressUpdate(job.id, job.runs, event.progress)

    async def _finish(self, flight: _InFlight, outcome: ExecutorEvent) -> None:
        job, run = flight.job, flight.run
        self._progress.pop(job.id, None)
        updated: Job | None = None
        if outcome.type != ex.SUCCEEDED:  # no partial output outlives the recorded end
            await asyncio.to_thread(self.files.clean_run, job.id, run)
        if outcome.type == ex.SUCCEEDED:
            updated = await self._succeed(job, run, outcome)
        elif outcome.type == ex.FAILED:
            error = outcome.error or JobError(INTERNAL, "the run failed", permanent=False)
            if error.permanent:
                updated = await self.store.fail(job.id, run, error)
                if error.code == ContentPolicyViolation.code and updated is not None:
                    # Refused content is deleted at once; the refusal stays on the job.
                    await asyncio.to_thread(self.files.remove_inputs, job.id)
                    await self.store.note(job.id, run, "inputs_deleted", {"reason": error.code})
            else:
                delay = self.settings.retry.delay(job.attempts + 1)
                updated = await self.store.retry_later(job.id, run, error, delay)
        elif outcome.type == ex.RELEASED:
            updated = await self.store.release(job.id, run, "the server is stopping")
        elif outcome.type == ex.CANCELED:
            # Canceled on request (the store already says so), or the task stopped by itself.
            current = await self.store.get(job.id)
            if current is not None and current.status is JobStatus.RUNNING and current.runs == run:
                updated = await self.store.cancel(job.id, by="worker")
        going_again = updated is not None and updated.status is JobStatus.QUEUED
        if not going_again and self.files.has_partials(job.id):
            # A job that will run again keeps work/ (its finished video segments).
            await asyncio.to_thread(self.files.clean_partials, job.id)
        if updated is not None:
            self.bus.publish(JobEvent.of_job(updated))
            if updated.status is JobStatus.QUEUED:
                self.notify()

    async def _succeed(self, job: Job, run: int, outcome: ExecutorEvent) -> Job | None:
        """Mark the job succeeded and rename the run's output to its final name, in one
        store transaction (see ``Store.complete``); the output directory is fsynced with
        the commit."""
        name = job.spec.output
        size = outcome.output_bytes
        if size is None:  # the executor did not sync the output or measure it: do it here
            try:
                size = await asyncio.to_thread(self.files.sync_partial, job.id, run, name)
            except FileNotFoundError:
                size = None
        if size is None:
            error = JobError("no_output", "the task finished without writing its output")
            return await self.store.fail(job.id, run, error)
        return await self.store.complete(
            job.id,
            run,
            size,
            lambda: self.files.publish_output(job.id, run, name),
            outcome.result,
            sync=(self.files.outputs_dir(job.id),),
        )

    # -- requests ---------------------------------------------------------------------

    async def cancel(self, job_id: str, grace: float | None = None) -> None:
        """Stop the attempt running ``job_id`` (if any) and wait until it has ended."""
        flight = self._inflight.get(job_id)
        if flight is None:
            return
        grace = self.settings.cancel_grace_seconds if grace is None else grace
        flight.canceling = True
        await self._stop_flight(flight, grace)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(flight.done.wait()), grace + 30.0)

    async def _stop_flight(self, flight: _InFlight, grace: float) -> None:
        if flight.split is not None:
            await flight.split.cancel(grace)
        else:
            await self.executor.cancel(flight.job.id, grace)

    # -- periodic services ------------------------------------------------------------

    async def _every(self, seconds: float, action) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", getattr(action, "__name__", action))

    async def heartbeat(self) -> None:
        """Renew the leases of running attempts; stop any attempt whose lease was lost."""
        leases = [(job_id, flight.run) for job_id, flight in self._inflight.items()]
        lost = await self.store.renew(leases, self.settings.lease_seconds)
        for job_id in lost:
            flight = self._inflight.get(job_id)
            if flight is not None and not flight.canceling:
                log.warning("job %s lost its lease; stopping its run", job_id)
                flight.canceling = True
                await self._stop_flight(flight, 0)

    async def recover(self) -> list[Job]:
        """Jobs whose lease expired go back to the queue (or fail after max attempts)."""
        recovered = await self.store.recover_expired(
            self.settings.retry.delay, exclude=set(self._inflight)
        )
        for job in recovered:
            log.warning("job %s recovered from an expired lease: now %s", job.id, job.status)
            if job.finished:
                self.files.clean_partials(job.id)
            self.bus.publish(JobEvent.of_job(job))
        if recovered:
            self.notify()
        return recovered

    async def flush_progress(self) -> None:
        updates = list(self._progress.values())
        self._progress.clear()
        await self.store.save_progress(updates)


def _spec_dict(job: Job) -> dict:
    import json

    return json.loads(job.spec.to_json())
