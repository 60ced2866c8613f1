//! Group commit: concurrent writes share one database transaction and one commit.
//!
//! Every [`LoggedTx`] write is a job handed to [`Writes::run`]. A few *lanes* (tasks, each
//! holding one writer connection while it works) take jobs from bounded queues, one per
//! lane; a lane begins a transaction, runs every job it can take from one queue (up to
//! [`StoreOptions::write_batch_max`](crate::store::StoreOptions::write_batch_max)), then
//! writes all the batch's events with one sequence bump per tenant and commits once. Each
//! caller is answered only after the commit that holds its write.
//!
//! A job that fails (insufficient funds, a validation error, a conflict) never fails its
//! neighbours. A job that failed before touching the database is answered at once and the
//! batch goes on. One that touched it is undone in one of two ways:
//! - *guarded* batches run each job behind its own `SAVEPOINT`: the failed job is rolled
//!   back to it, its events dropped, and answered at once;
//! - *unguarded* batches, the usual kind, run jobs bare, sparing PostgreSQL a round trip
//!   per job; the first touched failure rolls the batch back and the lane runs it again,
//!   guarded, the failed job in its place among the others, so its answer is the one it
//!   gets against what really commits. See [`Lane::guarded_batches`] for how long a lane
//!   stays guarded.
//!
//! Batches form only under load and cost nothing when idle: a lane never waits for
//! company. A lone write runs as `BEGIN`, its statements, `COMMIT`, as it would alone;
//! while that commit is under way the next writes queue, and the lane's next batch takes
//! them all.
//!
//! Why the order inside a batch is safe on PostgreSQL with several lanes:
//! - The tenants' sequence rows are locked last (in [`LoggedTx::write_events`]) and in
//!   tenant-id order, so a lane holds them only across the event INSERT and the commit,
//!   and two lanes never wait for each other's sequence rows in a cycle. Lanes run their
//!   jobs' own statements in parallel and queue only for that last step, which is what lets
//!   one tenant's writes go faster than one connection's sequential round trips.
//! - A deadlock or serialization failure inside a job undoes it (to its savepoint, or with
//!   its unguarded batch) and the job runs again in the lane's next batch, after this one
//!   released its locks; one that aborts the commit step reruns the whole batch. Jobs are
//!   `Fn` for this.
//! - A batch's savepoints stay under 64 by default, PostgreSQL's per-transaction cache of
//!   subtransaction ids, past which every other session's snapshot checks slow down.
//!
//! Why each lane has a queue of its own, and each tenant a *home lane* whose queue takes
//! its writes: a batch writes one events statement per tenant in it and locks each of
//! their sequence rows until its commit. Had every lane taken from one shared queue, every
//! batch would hold a bit of every busy tenant, and the lanes would queue for each other on
//! all those rows as they do on one tenant's. With a home each, different tenants' batches
//! commit side by side. A lane whose own queue is empty helps the longest other queue, so
//! one busy tenant still has every lane: a batch takes its jobs from one queue only, and
//! so still touches only the tenants whose home that queue is.
//!
//! On SQLite there is one lane: the database has one writer. The lane runs on a thread of
//! its own and drives a connection of its own on it, without a thread hand-off per
//! statement (see `store/direct.rs`); for each batch it takes the store's single writer
//! connection as its turn, and gives it back after the commit, so that single-statement
//! writes outside it (leases, the inbox worker's claims) interleave between batches.
//!
//! Size: about 1,170 lines, 480 of them tests: the queues, the lanes with their homes and
//! helping, and one batch's life (savepoints, conflict reruns, panics, the commit and the
//! answers) are one mechanism, and its tests need its private counters.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{oneshot, Notify};

use super::{EventHub, LoggedTx};
use crate::store::{Backend, Store, StoreError, TransientConflict, CONFLICT_RETRIES};

/// The handle through which every logged write runs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Writes {
    /// One queue per lane, indexed like the lanes.
    queues: Arc<[flume::Sender<Queued>]>,
    state: Arc<Shared>,
}

/// Bookkeeping shared by the handle and its lanes.
#[derive(Debug, Default)]
struct Shared {
    /// Jobs submitted and not yet answered, for [`Writes::drain`].
    in_flight: AtomicUsize,
    /// Signalled whenever `in_flight` drops to zero.
    idle: Notify,
    /// Each tenant's home lane, handed out in turn on the tenant's first write so that the
    /// first tenants of a host get a lane each. One entry per tenant that wrote since
    /// start; a lookup is a hash and an uncontended lock per write.
    homes: Mutex<HomeLanes>,
    /// Wakes one idle lane to help: a write was queued while its home lane was busy.
    queued: Notify,
    /// Per lane: waiting for a job. A write queued for a waiting lane wakes that lane only;
    /// waking a helper as well cost delivery to 1,000 terminals on PostgreSQL 0.6–1 ms of
    /// p99 at 50 lone writes/s (two wake-ups per write where one does).
    waiting: Box<[std::sync::atomic::AtomicBool]>,
    /// Batches run, and the jobs they took, for the tests' assertions.
    #[cfg(test)]
    batches: std::sync::atomic::AtomicU64,
    #[cfg(test)]
    batched_jobs: std::sync::atomic::AtomicU64,
    /// Unguarded batches rolled back to run again guarded.
    #[cfg(test)]
    reruns: std::sync::atomic::AtomicU64,
}

/// How the group commit is shaped; see [`crate::store::StoreOptions`] for the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// Jobs one transaction takes at most.
    pub max_batch: usize,
    /// Lanes (transactions in progress at once). Always 1 on SQLite.
    pub lanes: usize,
}

impl GroupCommitOptions {
    /// The options for `store`: SQLite has a single writer, so a single lane.
    pub(crate) fn for_store(store: &Store) -> Self {
        let options = store.options();
        GroupCommitOptions {
            max_batch: options.write_batch_max.max(1),
            lanes: match store.backend() {
                Backend::Sqlite => 1,
                // At least one pooled connection stays for reads.
                Backend::Postgres => options
                    .write_lanes
                    .min(store.writer().options().get_max_connections() as usize - 1)
                    .max(1),
            },
        }
    }

    /// Queue slots: enough for every lane to fill its next batch twice over. A full queue
    /// makes further writers wait in [`Writes::run`] (backpressure) rather than pile up
    /// work in memory; the HTTP connection cap bounds how many can wait.
    fn queue_capacity(self) -> usize {
        self.max_batch.saturating_mul(self.lanes).saturating_mul(2)
    }
}

/// Which lane is each tenant's home.
#[derive(Debug, Default)]
struct HomeLanes {
    lanes: HashMap<String, usize>,
    /// The lane the next new tenant gets.
    next: usize,
}

impl HomeLanes {
    /// `tenant_id`'s home among `lanes` lanes, given it now if it has none yet.
    fn of(&mut self, tenant_id: &str, lanes: usize) -> usize {
        if let Some(&lane) = self.lanes.get(tenant_id) {
            return lane;
        }
        let lane = self.next % lanes.max(1);
        self.next = self.next.wrapping_add(1);
        self.lanes.insert(tenant_id.to_owned(), lane);
        lane
    }
}

/// A write's failure: a database error, or the write's own decision to roll its changes
/// back while still answering its caller with a value (a hook delivery whose actions were
/// refused half-way reports "failed" and keeps nothing of them).
#[derive(Debug)]
pub(crate) enum Undo<R> {
    /// The database failed the write.
    Store(StoreError),
    /// The write rolled itself back; its caller gets this.
    With(R),
}

impl<R> From<StoreError> for Undo<R> {
    fn from(err: StoreError) -> Self {
        Undo::Store(err)
    }
}

impl<R> TransientConflict for Undo<R> {
    fn is_transient_conflict(&self) -> bool {
        matches!(self, Undo::Store(err) if err.is_transient_conflict())
    }
}

/// What a job's run left behind in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Succeeded: its changes stay and commit with the batch.
    Keep,
    /// Failed: roll its changes back. `conflict`: the database aborted it to break a
    /// deadlock or serialization conflict, so it may run again.
    Failed { conflict: bool },
}

/// A job with its result type erased, as the lanes see it.
trait Job: Send {
    /// Runs the job's statements in `tx` and keeps its result for [`Job::answer`].
    fn run<'t>(&'t mut self, tx: &'t mut LoggedTx) -> BoxFuture<'t, Outcome>;
    /// Answers the caller: with the kept result, or with `failed`, the error that ended the
    /// batch before it committed.
    fn answer(self: Box<Self>, failed: Option<&Arc<StoreError>>);
}

/// A job as submitted: the operation, its last result, and where to send it.
struct Typed<T, E, F> {
    op: F,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Job for Typed<T, E, F>
where
    T: Send + 'static,
    E: From<StoreError> + TransientConflict + Send + 'static,
    F: for<'t> Fn(&'t mut LoggedTx) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
{
    fn run<'t>(&'t mut self, tx: &'t mut LoggedTx) -> BoxFuture<'t, Outcome> {
        Box::pin(async move {
            let result = (self.op)(tx).await;
            let outcome = match &result {
                Ok(_) => Outcome::Keep,
                Err(err) => Outcome::Failed {
                    conflict: err.is_transient_conflict(),
                },
            };
            self.result = Some(result);
            outcome
        })
    }

    fn answer(self: Box<Self>, failed: Option<&Arc<StoreError>>) {
        let result = match (failed, self.result) {
            (Some(err), _) => Err(E::from(StoreError::Batch(err.clone()))),
            (None, Some(result)) => result,
            (None, None) => Err(E::from(StoreError::WriteAbandoned)),
        };
        // The caller may have gone (a client that hung up); the write stands regardless.
        let _ = self.reply.send(result);
    }
}

/// A queued job and how often a conflict has sent it back. Dropped, it counts as done
/// for [`Writes::drain`] (answered or not: a job lost to a panic has its reply dropped,
/// which its caller reads as [`StoreError::WriteAbandoned`]).
struct Queued {
    job: Option<Box<dyn Job>>,
    conflicts: u32,
    state: Arc<Shared>,
}

impl Queued {
    /// Runs the job (see [`Job::run`]).
    fn run<'t>(&'t mut self, tx: &'t mut LoggedTx) -> BoxFuture<'t, Outcome> {
        match self.job.as_mut() {
            Some(job) => job.run(tx),
            None => Box::pin(async { Outcome::Failed { conflict: false } }),
        }
    }

    /// Answers the caller.
    fn answer(mut self, failed: Option<&Arc<StoreError>>) {
        if let Some(job) = self.job.take() {
            job.answer(failed);
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.state.done();
    }
}

impl Shared {
    /// Whether `lane` is waiting for a job (and so will take the one just queued for it).
    fn is_waiting(&self, lane: usize) -> bool {
        self.waiting
            .get(lane)
            .is_some_and(|waiting| waiting.load(Ordering::Acquire))
    }

    fn set_waiting(&self, lane: usize, waiting: bool) {
        if let Some(flag) = self.waiting.get(lane) {
            flag.store(waiting, Ordering::Release);
        }
    }

    fn done(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Writes {
    /// Starts the lanes on the current runtime. They run until the process ends; writes
    /// submitted after [`Store::close`] are answered with the pool's closed error.
    pub fn start(store: Store, hub: EventHub, options: GroupCommitOptions) -> Self {
        let lanes = options.lanes.max(1);
        // Each queue holds what all lanes could take, as the one shared queue did: one
        // busy tenant's writes all go to one queue, which every lane then helps drain.
        let (queues, jobs): (Vec<_>, Vec<_>) = (0..lanes)
            .map(|_| flume::bounded(options.queue_capacity().max(1)))
            .unzip();
        let jobs: Arc<[flume::Receiver<Queued>]> = jobs.into();
        let state = Arc::new(Shared {
            waiting: (0..lanes).map(|_| Default::default()).collect(),
            ..Shared::default()
        });
        for index in 0..lanes {
            let lane = Lane {
                store: store.clone(),
                hub: hub.clone(),
                queues: jobs.clone(),
                home: index,
                source: index,
                max_batch: options.max_batch,
                carry: VecDeque::new(),
                guarded_batches: 0,
                failed_attempts: 0,
                state: state.clone(),
            };
            match store.backend() {
                Backend::Sqlite => lane.spawn_on_own_thread(),
                Backend::Postgres => {
                    tokio::spawn(lane.run());
                }
            }
        }
        Writes {
            queues: queues.into(),
            state,
        }
    }

    /// Runs `op` in a transaction shared with other writes and returns its result once the
    /// transaction committed (an `Err` of `op` is returned at once, its changes rolled back).
    ///
    /// `tenant_id` names the tenant whose events `op` appends: its home lane's queue takes
    /// the write. It only routes: a write appending another tenant's events is still
    /// correct, it only shares that tenant's sequence row with the other lane.
    ///
    /// `op` may run more than once: again, in a later transaction, when the database aborts
    /// it or its batch to break a conflict; only the last run's changes and result count.
    /// It must therefore not act outside the transaction. It must not wait for anything
    /// slow either (a plugin call, another HTTP request): the lane waits with it.
    pub async fn run<T, E, F>(&self, tenant_id: &str, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + TransientConflict + Send + 'static,
        F: for<'t> Fn(&'t mut LoggedTx) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Typed {
            op,
            result: None,
            reply,
        };
        self.state.in_flight.fetch_add(1, Ordering::AcqRel);
        let queued = Queued {
            job: Some(Box::new(job)),
            conflicts: 0,
            state: self.state.clone(),
        };
        let home = match self.queues.len() {
            1 => 0,
            lanes => self
                .state
                .homes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .of(tenant_id, lanes),
        };
        match self.queues[home].send_async(queued).await {
            Ok(()) if self.queues.len() > 1 && !self.state.is_waiting(home) => {
                self.state.queued.notify_one()
            }
            Ok(()) => {}
            Err(flume::SendError(queued)) => {
                queued.answer(Some(&Arc::new(StoreError::Sqlx(sqlx::Error::PoolClosed))))
            }
        }
        // A dropped reply means the job was lost to a panic in its own code.
        answer
            .await
            .unwrap_or_else(|_| Err(E::from(StoreError::WriteAbandoned)))
    }

    /// Completes once every submitted write has been answered: shutdown calls it after the
    /// server stopped taking requests and before it closes the database.
    pub(crate) async fn drain(&self) {
        loop {
            let idle = self.state.idle.notified();
            if self.state.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// The longest a lane stays guarded after its unguarded batches kept failing: a rerun
/// costs at most one batch's work per this many batches. Measured on one tenant's loyalty
/// adds (`wrk`, 64 connections), savepoints cost PostgreSQL a tenth to a fifth of its
/// throughput, so this bounds the worst case near where savepoints everywhere would be.
const MAX_GUARDED_BATCHES: u32 = 64;

/// One lane: a task that runs batches one after another on one connection at a time.
struct Lane {
    store: Store,
    hub: EventHub,
    /// Every lane's queue; `queues[home]` is this lane's own.
    queues: Arc<[flume::Receiver<Queued>]>,
    home: usize,
    /// The queue the batch under way takes its jobs from.
    source: usize,
    max_batch: usize,
    /// Jobs for the next batch before any new ones: those a conflict sent back.
    carry: VecDeque<Queued>,
    /// Batches still to run with a savepoint before each job; 0: run jobs without them.
    ///
    /// A savepoint is a round trip per job on PostgreSQL (a third of a loyalty add's), and
    /// almost every job succeeds, so a lane runs its jobs bare and pays only when one that
    /// touched the database fails: it rolls the batch back and runs it again guarded. A
    /// run of such failures doubles how long the lane stays guarded (up to
    /// [`MAX_GUARDED_BATCHES`]), so a client whose writes keep failing cannot make the
    /// lane redo its neighbours' work more than about once per that many batches.
    guarded_batches: u32,
    /// Unguarded batches in a row that a failing job made run again.
    failed_attempts: u32,
    /// Where a new write wakes an idle lane to help (see [`Shared::queued`]), and the
    /// tests' counters.
    state: Arc<Shared>,
}

impl Lane {
    /// Runs the lane on a thread of its own, which SQLite's statements then run on (see
    /// `store/direct.rs`): the tokio workers only hand jobs in and take answers out, and
    /// a commit's fsync blocks this thread, not theirs. The thread ends with the queue
    /// (every [`Writes`] handle dropped).
    fn spawn_on_own_thread(self) {
        let spawned = std::thread::Builder::new()
            .name("posbridge-sqlite-writer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(self.run()),
                    Err(err) => {
                        tracing::error!(error = %err, "the SQLite write lane could not start")
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "the SQLite write lane's thread could not start");
        }
    }

    async fn run(mut self) {
        loop {
            if self.carry.is_empty() {
                match self.first_job().await {
                    Some(job) => self.carry.push_back(job),
                    // Every handle is gone: the process is ending.
                    None => return,
                }
            }
            // A panic outside the jobs' own code (caught per job inside) would otherwise
            // end the lane and leave every later write waiting; the batch's jobs are lost
            // (their callers get an error) but the lane goes on.
            if AssertUnwindSafe(self.batch()).catch_unwind().await.is_err() {
                tracing::error!("a write batch panicked; its writes were abandoned");
            }
        }
    }

    /// The first job of the next batch, waiting for one if none is queued: from the lane's
    /// own queue, else from the longest other one, which becomes the batch's source. `None`
    /// once every [`Writes`] handle is gone.
    async fn first_job(&mut self) -> Option<Queued> {
        if self.queues.len() == 1 {
            // SQLite's one lane: nothing to help, and nobody signals `queued`.
            return self.queues[self.home].recv_async().await.ok();
        }
        loop {
            if let Some(job) = self.take_from(self.home) {
                return Some(job);
            }
            let busiest = (0..self.queues.len())
                .filter(|&index| index != self.home)
                .max_by_key(|&index| self.queues[index].len());
            if let Some(job) = busiest.and_then(|index| self.take_from(index)) {
                return Some(job);
            }
            let queued = self.state.queued.notified();
            self.state.set_waiting(self.home, true);
            let woken = tokio::select! {
                job = self.queues[self.home].recv_async() => Some(job),
                () = queued => None,
            };
            self.state.set_waiting(self.home, false);
            if let Some(job) = woken {
                self.source = self.home;
                return job.ok();
            }
        }
    }

    /// A job queued now in `queue`, which then becomes the batch's source.
    fn take_from(&mut self, queue: usize) -> Option<Queued> {
        let job = self.queues[queue].try_recv().ok()?;
        self.source = queue;
        Some(job)
    }

    /// The next job of this batch: a carried one first, else whatever is queued now in the
    /// batch's source queue.
    fn next_job(&mut self) -> Option<Queued> {
        self.carry
            .pop_front()
            .or_else(|| self.queues[self.source].try_recv().ok())
    }

    /// Runs one batch: begin, the jobs behind savepoints, the events, commit, answers.
    /// Boxed as `Send` here, where the compiler can still name the borrows' lifetimes
    /// (checked only at `tokio::spawn`, it cannot prove sqlx's executors `Send` for all).
    fn batch(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.batch_inner())
    }

    async fn batch_inner(&mut self) {
        let guarded = self.guarded_batches > 0;
        self.guarded_batches = self.guarded_batches.saturating_sub(1);
        // Begun on the first job's turn, and again after a failed first job rolled back.
        let mut open: Option<LoggedTx> = None;
        let mut kept: Vec<Queued> = Vec::new();
        let mut rerun: Vec<Queued> = Vec::new();
        let mut taken = 0;
        while taken < self.max_batch {
            let Some(mut job) = self.next_job() else {
                break;
            };
            taken += 1;
            let tx = match open.as_mut() {
                // Guarded, later jobs run behind a savepoint; the first needs none: should
                // it fail, the whole transaction, which holds nothing else, rolls back.
                Some(tx) if guarded => match tx.savepoint().await {
                    Ok(()) => tx,
                    Err(err) => {
                        self.carry.extend(rerun);
                        return self.fail(kept, Some(job), err);
                    }
                },
                Some(tx) => tx,
                None => match LoggedTx::begin(&self.store, &self.hub).await {
                    Ok(tx) => open.insert(tx),
                    Err(err) => {
                        // Out of reach or closed: every job waiting now gets the error,
                        // rather than each of them waiting for its own turn at it.
                        self.carry.extend(rerun);
                        let err = Arc::new(err);
                        for job in kept.into_iter().chain([job]) {
                            job.answer(Some(&err));
                        }
                        while let Some(job) = self.next_job() {
                            job.answer(Some(&err));
                        }
                        return;
                    }
                },
            };
            let mark = tx.pending_len();
            tx.untouched();
            let outcome = AssertUnwindSafe(job.run(tx)).catch_unwind().await;
            match outcome {
                Ok(Outcome::Keep) => kept.push(job),
                Ok(Outcome::Failed { conflict }) => {
                    tx.truncate_pending(mark);
                    let touched = tx.touched();
                    if touched && !guarded && !kept.is_empty() {
                        // Nothing to roll back to short of the whole batch: it runs again
                        // from its start, guarded, this job among the others in its place.
                        if let Some(tx) = open.take() {
                            if let Err(err) = tx.rollback().await {
                                tracing::warn!(error = %err, "rolling back a batch to run it guarded");
                            }
                        }
                        self.carry.push_front(job);
                        for job in kept.into_iter().rev() {
                            self.carry.push_front(job);
                        }
                        self.carry.extend(rerun);
                        self.failed_attempts = (self.failed_attempts + 1).min(16);
                        self.guarded_batches =
                            (1u32 << (self.failed_attempts - 1)).min(MAX_GUARDED_BATCHES);
                        metrics::counter!("posbridge_write_batch_reruns_total").increment(1);
                        #[cfg(test)]
                        self.state.reruns.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    let undone = if !touched {
                        // It ran no statement: there is nothing to undo.
                        Ok(())
                    } else if kept.is_empty() {
                        match open.take() {
                            Some(tx) => tx.rollback().await,
                            None => Ok(()),
                        }
                    } else {
                        tx.rollback_to_savepoint().await
                    };
                    if conflict && job.conflicts < CONFLICT_RETRIES {
                        // After this batch commits, the locks it waited for are free.
                        job.conflicts += 1;
                        metrics::counter!("posbridge_transaction_retries_total").increment(1);
                        rerun.push(job);
                    } else {
                        job.answer(None);
                    }
                    if let Err(err) = undone {
                        self.carry.extend(rerun);
                        return self.fail(kept, None, err);
                    }
                }
                Err(_) => {
                    // A bug in the job's own code: its caller gets an error (its reply is
                    // dropped with it), and since the connection may be mid-statement the
                    // transaction goes; the others run again in the next batch.
                    tracing::error!("a write panicked; its batch runs again without it");
                    drop(job);
                    drop(open);
                    for job in kept.into_iter().rev() {
                        self.carry.push_front(job);
                    }
                    self.carry.extend(rerun);
                    return;
                }
            }
        }
        metrics::histogram!("posbridge_write_batch_jobs").record(taken as f64);
        #[cfg(test)]
        {
            self.state.batches.fetch_add(1, Ordering::Relaxed);
            self.state
                .batched_jobs
                .fetch_add(taken as u64, Ordering::Relaxed);
        }
        if !guarded {
            // Every job that failed did so without touching the database.
            self.failed_attempts = 0;
        }
        let Some(tx) = open.filter(|_| !kept.is_empty()) else {
            // Nothing to commit: every job failed (and rolled back).
            self.carry.extend(rerun);
            return;
        };
        match tx.commit().await {
            Ok(()) => {
                for job in kept {
                    job.answer(None);
                }
            }
            Err(err) if err.is_transient_conflict() => {
                // The commit step itself was the deadlock victim: nothing of the batch was
                // written. Every job runs again, first in the next batch.
                metrics::counter!("posbridge_transaction_retries_total").increment(1);
                let err = Arc::new(err);
                for mut job in kept.into_iter().rev() {
                    if job.conflicts < CONFLICT_RETRIES {
                        job.conflicts += 1;
                        self.carry.push_front(job);
                    } else {
                        job.answer(Some(&err));
                    }
                }
            }
            Err(err) => {
                let err = Arc::new(err);
                for job in kept {
                    job.answer(Some(&err));
                }
            }
        }
        self.carry.extend(rerun);
    }

    /// Ends a batch that could not go on: every kept job (and `current`) gets `err`.
    fn fail(&mut self, kept: Vec<Queued>, current: Option<Queued>, err: StoreError) {
        let err = Arc::new(err);
        for job in kept.into_iter().chain(current) {
            job.answer(Some(&err));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::events::HubOptions;
    use crate::store::StoreOptions;

    #[test]
    fn queue_capacity_covers_two_batches_per_lane() {
        let options = GroupCommitOptions {
            max_batch: 64,
            lanes: 4,
        };
        assert_eq!(options.queue_capacity(), 512);
    }

    /// A fresh SQLite store with a table `t (v)` and the group commit over it.
    async fn writes(max_batch: usize) -> (Store, Writes, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("posbridge-batch-{}", crate::store::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .execute(store.writer())
            .await
            .unwrap();
        let hub = EventHub::new(HubOptions::default());
        let options = GroupCommitOptions {
            max_batch,
            lanes: 1,
        };
        (store.clone(), Writes::start(store, hub, options), dir)
    }

    async fn values(store: &Store) -> Vec<i64> {
        sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(store.reader())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_rolls_back_alone_and_its_neighbours_commit() {
        let (store, writes, dir) = writes(64).await;
        let runs = (0..40i64).map(|v| {
            let writes = writes.clone();
            async move {
                writes
                    .run("t", move |tx| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO t (v) VALUES ($1)")
                                .bind(v)
                                .execute(tx.conn())
                                .await?;
                            // Even writes fail after their insert: it must not survive.
                            if v % 2 == 0 {
                                return Err(StoreError::WriteAbandoned);
                            }
                            Ok(v)
                        })
                    })
                    .await
            }
        });
        let results = futures_util::future::join_all(runs).await;
        for (v, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), v % 2 == 1, "write {v}: {result:?}");
        }
        let odd: Vec<i64> = (0..40).filter(|v| v % 2 == 1).collect();
        assert_eq!(values(&store).await, odd);
        writes.drain().await;
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// An event whose tenant has no row (deleted meanwhile) fails its write, which leaves
    /// nothing behind. `events.tenant_id` is not a foreign key (migration 0022): the
    /// sequence bump that finds no tenant row is what refuses the event, on both databases.
    #[tokio::test]
    async fn an_event_of_a_tenant_without_a_row_fails_its_write_and_leaves_nothing() {
        let (store, writes, dir) = writes(64).await;
        let result = writes
            .run("gone", |tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (v) VALUES (1)")
                        .execute(tx.conn())
                        .await?;
                    tx.append_raw("gone", "loyalty_updated", "{}".to_owned());
                    Ok::<_, StoreError>(())
                })
            })
            .await;
        assert!(result.is_err(), "{result:?}");
        assert_eq!(values(&store).await, Vec::<i64>::new());
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(store.reader())
            .await
            .unwrap();
        assert_eq!(events, 0);
        writes.drain().await;
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// An error that says "conflict" on the first run of each write.
    #[derive(Debug)]
    struct FirstRunConflicts(bool);

    impl From<StoreError> for FirstRunConflicts {
        fn from(_: StoreError) -> Self {
            FirstRunConflicts(false)
        }
    }

    impl TransientConflict for FirstRunConflicts {
        fn is_transient_conflict(&self) -> bool {
            self.0
        }
    }

    #[tokio::test]
    async fn sqlite_writes_run_on_the_writer_thread_over_the_direct_connection() {
        let (store, writes, dir) = writes(64).await;
        let (thread, direct) = writes
            .run("t", |tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (v) VALUES (1)")
                        .execute(tx.conn())
                        .await?;
                    let thread = std::thread::current().name().map(str::to_owned);
                    let direct = matches!(tx.conn(), crate::store::Conn::Direct(_));
                    Ok::<_, StoreError>((thread, direct))
                })
            })
            .await
            .unwrap();
        assert_eq!(thread.as_deref(), Some("posbridge-sqlite-writer"));
        assert!(direct, "the SQLite lane fell back to sqlx's driver");
        // What the lane's own connection committed, sqlx's readers see.
        assert_eq!(values(&store).await, vec![1]);
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_write_aborted_by_a_conflict_runs_again_and_commits_once() {
        let (store, writes, dir) = writes(64).await;
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let result = writes
            .run("t", move |tx| {
                let runs = counted.clone();
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (v) VALUES (7)")
                        .execute(tx.conn())
                        .await
                        .map_err(|_| FirstRunConflicts(false))?;
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        return Err(FirstRunConflicts(true));
                    }
                    Ok(())
                })
            })
            .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(values(&store).await, vec![7]);
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_lane_goes_on() {
        let (store, writes, dir) = writes(64).await;
        let panicked: Result<(), StoreError> = writes
            .run("t", |_tx| Box::pin(async { panic!("a bug in a write") }))
            .await;
        assert!(matches!(panicked, Err(StoreError::WriteAbandoned)));
        let after: Result<(), StoreError> = writes
            .run("t", |tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (v) VALUES (1)")
                        .execute(tx.conn())
                        .await?;
                    Ok(())
                })
            })
            .await;
        assert!(after.is_ok(), "{after:?}");
        assert_eq!(values(&store).await, vec![1]);
        writes.drain().await;
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_never_exceed_their_maximum() {
        let (store, writes, dir) = writes(3).await;
        let runs = (0..30i64).map(|v| {
            let writes = writes.clone();
            async move {
                writes
                    .run("t", move |tx| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO t (v) VALUES ($1)")
                                .bind(v)
                                .execute(tx.conn())
                                .await?;
                            Ok::<_, StoreError>(())
                        })
                    })
                    .await
            }
        });
        for result in futures_util::future::join_all(runs).await {
            result.unwrap();
        }
        assert_eq!(values(&store).await.len(), 30);
        let jobs = writes.state.batched_jobs.load(Ordering::Relaxed);
        let batches = writes.state.batches.load(Ordering::Relaxed);
        assert_eq!(jobs, 30);
        assert!(batches >= 10, "30 writes in {batches} batches of at most 3");
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// A lane over `store` fed by a queue the test fills, to run one batch at a time.
    fn bare_lane(store: &Store) -> (Lane, flume::Sender<Queued>) {
        let (queue, jobs) = flume::unbounded();
        let lane = Lane {
            store: store.clone(),
            hub: EventHub::new(HubOptions::default()),
            queues: Arc::new([jobs]),
            home: 0,
            source: 0,
            max_batch: 64,
            carry: VecDeque::new(),
            guarded_batches: 0,
            failed_attempts: 0,
            state: Arc::new(Shared::default()),
        };
        (lane, queue)
    }

    #[test]
    fn each_new_tenant_gets_the_next_home_lane_and_keeps_it() {
        let mut homes = HomeLanes::default();
        let first: Vec<usize> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|t| homes.of(t, 4))
            .collect();
        assert_eq!(first, [0, 1, 2, 3, 0]);
        assert_eq!(homes.of("c", 4), 2);
        assert_eq!(homes.of("a", 4), 0);
        assert_eq!(homes.of("f", 4), 1);
    }

    /// Two lanes over `store` sharing two queues the test fills: lane `i`'s own is `i`.
    fn two_bare_lanes(store: &Store) -> ([Lane; 2], [flume::Sender<Queued>; 2]) {
        let (first, second) = (flume::unbounded(), flume::unbounded());
        let queues: Arc<[flume::Receiver<Queued>]> = Arc::new([first.1, second.1]);
        let state = Arc::new(Shared::default());
        let lane = |home| Lane {
            store: store.clone(),
            hub: EventHub::new(HubOptions::default()),
            queues: queues.clone(),
            home,
            source: home,
            max_batch: 64,
            carry: VecDeque::new(),
            guarded_batches: 0,
            failed_attempts: 0,
            state: state.clone(),
        };
        ([lane(0), lane(1)], [first.0, second.0])
    }

    /// One turn of [`Lane::run`]: the first job, then its batch.
    async fn one_batch(lane: &mut Lane) {
        let job = lane.first_job().await.unwrap();
        lane.carry.push_back(job);
        lane.batch().await;
    }

    #[tokio::test]
    async fn a_batch_takes_one_queue_only_and_an_idle_lane_helps_the_longest() {
        let (store, _writes, dir) = writes(64).await;
        let ([mut first, mut second], [to_first, to_second]) = two_bare_lanes(&store);
        let mine: Vec<_> = (1..=2)
            .map(|v| queue_insert(&second, &to_second, v, Ending::Commits))
            .collect();
        let theirs: Vec<_> = (10..=13)
            .map(|v| queue_insert(&first, &to_first, v, Ending::Commits))
            .collect();

        // The second lane serves its own queue first, and nothing of the other.
        one_batch(&mut second).await;
        assert_eq!(values(&store).await, vec![1, 2]);
        assert_eq!(to_first.len(), 4);
        // Its own queue empty, it helps the first lane's, taking it whole in one batch.
        one_batch(&mut second).await;
        assert_eq!(values(&store).await, vec![1, 2, 10, 11, 12, 13]);
        assert_eq!(first.state.batches.load(Ordering::Relaxed), 2);
        for (mut answer, _) in mine.into_iter().chain(theirs) {
            assert!(answer.try_recv().unwrap().is_ok());
        }

        // Idle, a lane wakes for a write queued to another lane and helps with it.
        let waiting = tokio::spawn(async move {
            one_batch(&mut first).await;
            first
        });
        let (mut late, _) = queue_insert(&second, &to_second, 20, Ending::Commits);
        second.state.queued.notify_one();
        let first = waiting.await.unwrap();
        assert_eq!(first.source, 1);
        assert_eq!(late.try_recv().unwrap().unwrap(), 20);
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// How a queued test write ends.
    #[derive(Clone, Copy, PartialEq)]
    enum Ending {
        Commits,
        FailsAfterInsert,
        FailsUntouched,
    }

    /// Lets a closure's signature be inferred for every borrow of the transaction.
    fn higher_ranked<F>(op: F) -> F
    where
        F: for<'t> Fn(&'t mut LoggedTx) -> BoxFuture<'t, Result<i64, StoreError>>,
    {
        op
    }

    /// A queued test write's answer and its run count.
    type QueuedWrite = (oneshot::Receiver<Result<i64, StoreError>>, Arc<AtomicU32>);

    /// Queues a write that inserts `v` (unless it fails untouched) and counts its runs.
    fn queue_insert(
        lane: &Lane,
        queue: &flume::Sender<Queued>,
        v: i64,
        ending: Ending,
    ) -> QueuedWrite {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let (reply, answer) = oneshot::channel();
        let op = higher_ranked(move |tx| {
            let runs = counted.clone();
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                if ending == Ending::FailsUntouched {
                    return Err(StoreError::WriteAbandoned);
                }
                sqlx::query("INSERT INTO t (v) VALUES ($1)")
                    .bind(v)
                    .execute(tx.conn())
                    .await?;
                match ending {
                    Ending::Commits => Ok(v),
                    _ => Err(StoreError::WriteAbandoned),
                }
            })
        });
        lane.state.in_flight.fetch_add(1, Ordering::AcqRel);
        let queued = Queued {
            job: Some(Box::new(Typed {
                op,
                result: None,
                reply,
            })),
            conflicts: 0,
            state: lane.state.clone(),
        };
        queue.send(queued).unwrap();
        (answer, runs)
    }

    /// Queues writes of 1, 2 and 3, the middle one ending as `middle`, the others committing.
    fn around_a_write_that(
        lane: &Lane,
        queue: &flume::Sender<Queued>,
        middle: Ending,
    ) -> [QueuedWrite; 3] {
        [
            queue_insert(lane, queue, 1, Ending::Commits),
            queue_insert(lane, queue, 2, middle),
            queue_insert(lane, queue, 3, Ending::Commits),
        ]
    }

    #[tokio::test]
    async fn a_bare_job_failing_after_its_insert_reruns_the_batch_guarded() {
        let (store, _writes, dir) = writes(64).await;
        let (mut lane, queue) = bare_lane(&store);
        let [(mut a, a_runs), (mut b, b_runs), (mut c, c_runs)] =
            around_a_write_that(&lane, &queue, Ending::FailsAfterInsert);

        lane.batch().await;
        // Rolled back, nobody answered yet, and the lane guarded for the rerun.
        assert_eq!(lane.state.reruns.load(Ordering::Relaxed), 1);
        assert_eq!(lane.guarded_batches, 1);
        assert!(values(&store).await.is_empty());
        assert!(a.try_recv().is_err() && b.try_recv().is_err() && c.try_recv().is_err());
        // C was never reached: the rerun is the batch's first run for it.
        assert_eq!(c_runs.load(Ordering::SeqCst), 0);

        lane.batch().await;
        assert_eq!(a.try_recv().unwrap().unwrap(), 1);
        assert!(b.try_recv().unwrap().is_err());
        assert_eq!(c.try_recv().unwrap().unwrap(), 3);
        assert_eq!(values(&store).await, vec![1, 3]);
        assert_eq!(
            [&a_runs, &b_runs, &c_runs].map(|r| r.load(Ordering::SeqCst)),
            [2, 2, 1]
        );
        assert_eq!(lane.state.reruns.load(Ordering::Relaxed), 1);
        assert_eq!(lane.guarded_batches, 0);

        // A clean unguarded batch forgets the failure.
        assert_eq!(lane.failed_attempts, 1);
        let (mut d, _) = queue_insert(&lane, &queue, 4, Ending::Commits);
        lane.batch().await;
        assert_eq!(d.try_recv().unwrap().unwrap(), 4);
        assert_eq!(lane.failed_attempts, 0);
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_job_failing_before_touching_the_database_costs_its_batch_nothing() {
        let (store, _writes, dir) = writes(64).await;
        let (mut lane, queue) = bare_lane(&store);
        let [(mut a, a_runs), (mut b, _), (mut c, _)] =
            around_a_write_that(&lane, &queue, Ending::FailsUntouched);
        lane.batch().await;
        assert!(matches!(b.try_recv(), Ok(Err(StoreError::WriteAbandoned))));
        assert_eq!(a.try_recv().unwrap().unwrap(), 1);
        assert_eq!(c.try_recv().unwrap().unwrap(), 3);
        assert_eq!(values(&store).await, vec![1, 3]);
        assert_eq!(a_runs.load(Ordering::SeqCst), 1);
        assert_eq!(lane.state.reruns.load(Ordering::Relaxed), 0);
        assert_eq!((lane.guarded_batches, lane.failed_attempts), (0, 0));
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn failing_bare_batches_in_a_row_double_the_guarded_stretch_up_to_its_cap() {
        let (store, _writes, dir) = writes(64).await;
        let (mut lane, queue) = bare_lane(&store);
        let mut stretches = Vec::new();
        for round in 0..9 {
            let (mut ok, _) = queue_insert(&lane, &queue, 2 * round, Ending::Commits);
            let (_failing, _) =
                queue_insert(&lane, &queue, 2 * round + 1, Ending::FailsAfterInsert);
            lane.batch().await;
            stretches.push(lane.guarded_batches);
            while lane.guarded_batches > 0 {
                lane.batch().await;
            }
            assert_eq!(ok.try_recv().unwrap().unwrap(), 2 * round);
        }
        assert_eq!(stretches, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        assert_eq!(
            values(&store).await,
            (0..9).map(|r| 2 * r).collect::<Vec<_>>()
        );
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }
}
