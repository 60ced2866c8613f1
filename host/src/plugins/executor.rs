//! Where guest code runs: a small tokio runtime of its own, on threads the API does not use,
//! at a lower OS scheduling priority.
//!
//! A guest that spins burns its whole CPU deadline. On the API's runtime, a few such calls
//! at once occupy every worker thread between their epoch yields, and terminal requests
//! queue behind them (two spinning guests took a 2-core host's worst balance read from 6 ms
//! to 556 ms). Here guests can occupy at most [`default_guest_threads`] threads, and the
//! kernel prefers the API's threads whenever both want a core.
//!
//! Host imports that do I/O (outbound HTTP, plugin state in the database) are sent back to
//! the API's runtime through [`HostIo`]: sockets opened from a guest thread would be
//! registered with this runtime's reactor, and pooled database connections opened here
//! would then be driven by threads busy running guests.

use std::future::Future;

use tokio::runtime::{Handle, Runtime};

/// Nice value of guest threads. 10 gives a guest thread about a tenth of the weight of an
/// API thread when both are runnable (Linux CFS weights), so spinning guests get the cores
/// only while the API leaves them idle. Ignored where per-thread priorities do not exist.
pub(crate) const GUEST_NICE: i32 = 10;

/// Guest threads when the operator does not say: half the cores, at least one, so guests
/// can never occupy every core (on a 2-core host: one thread).
pub(crate) fn default_guest_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// Failures running a guest call on its runtime.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The guest runtime could not be built.
    #[error("cannot start the plugin runtime threads: {0}")]
    Start(#[from] std::io::Error),
    /// The task panicked or the runtime is shutting down.
    #[error("plugin task did not complete: {0}")]
    Lost(String),
}

/// The guest runtime. Dropping it stops its threads without blocking.
pub(super) struct GuestExecutor {
    runtime: Option<Runtime>,
    threads: usize,
    host: HostIo,
}

impl GuestExecutor {
    /// Starts `threads` guest threads (at least one). Must be called inside the API's
    /// runtime: its handle is where [`HostIo`] sends host I/O.
    pub(super) fn new(threads: usize) -> Result<Self, ExecError> {
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            // Guests only wait on timers and on host I/O running elsewhere; a blocking
            // thread is never needed, but tokio wants at least one.
            .max_blocking_threads(1)
            .thread_name("posbridge-guest")
            .on_thread_start(lower_priority)
            .enable_time()
            .build()?;
        Ok(GuestExecutor {
            runtime: Some(runtime),
            threads,
            host: HostIo(Handle::current()),
        })
    }

    /// Guest threads.
    pub(super) fn threads(&self) -> usize {
        self.threads
    }

    /// The handle guest calls use for host I/O.
    pub(super) fn host_io(&self) -> HostIo {
        self.host.clone()
    }

    /// Runs `task` on a guest thread and waits for it. The task keeps running if the
    /// caller stops waiting, so whatever it holds (its concurrency permit) stays accounted.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ExecError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| ExecError::Lost("shutting down".into()))?;
        runtime
            .spawn(task)
            .await
            .map_err(|e| ExecError::Lost(e.to_string()))
    }
}

impl Drop for GuestExecutor {
    fn drop(&mut self) {
        // A plain drop blocks until the threads finish, which tokio forbids inside another
        // runtime (where the last `Plugins` clone is usually dropped).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs host-side I/O of guest calls on the API's runtime. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct HostIo(Handle);

impl HostIo {
    /// Starts `work` on the API's runtime without waiting for it.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.0.spawn(work);
    }

    /// Runs `io` on the API's runtime and waits for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        io: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ExecError> {
        self.0
            .spawn(io)
            .await
            .map_err(|e| ExecError::Lost(e.to_string()))
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread with no pointers involved. On Linux the
    // nice value is per thread, and PRIO_PROCESS with a thread id changes only that thread.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, GUEST_NICE)
    };
    if result != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not lower a plugin thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guest_tasks_run_on_guest_threads_and_host_io_back_on_the_caller_runtime() {
        let exec = GuestExecutor::new(1).expect("runtime");
        let host = exec.host_io();
        let (guest_thread, io_thread) = exec
            .run(async move {
                let guest = std::thread::current().name().map(str::to_owned);
                let io = host
                    .run(async { std::thread::current().name().map(str::to_owned) })
                    .await
                    .expect("host io");
                (guest, io)
            })
            .await
            .expect("guest task");
        assert_eq!(guest_thread.as_deref(), Some("posbridge-guest"));
        assert_ne!(io_thread.as_deref(), Some("posbridge-guest"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn guest_threads_run_at_a_lower_priority() {
        let exec = GuestExecutor::new(1).expect("runtime");
        // SAFETY: getpriority on the calling thread; errno is cleared first because -1 is a
        // valid nice value.
        let nice = exec
            .run(async {
                unsafe {
                    *libc::__errno_location() = 0;
                    libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
                }
            })
            .await
            .expect("guest task");
        assert_eq!(nice, GUEST_NICE);
    }
}
