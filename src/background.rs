//! The runtime background jobs run on (the rollup scheduler: `[rollup] threads`, `nice`):
//! its own tokio runtime whose threads, workers and blocking ones alike, run at a lower
//! OS priority than the server's, so that under a saturating load the write path and
//! queries get the CPU first and the jobs use what is left.
//!
//! A job's work then waits while the cores are busy and catches up once they are not: the
//! tiers lag behind (`strata_rollup_lag_seconds`) instead of the write path slowing down.
//! ClickHouse lowers its background and query threads' priority the same way (its
//! `os_thread_priority`). The priority is the thread's nice value, set per thread (Linux
//! `setpriority(PRIO_PROCESS, tid, ..)`, which on Linux applies to one thread: `man 2
//! setpriority`, "Linux notes") to the server's own plus `nice`, at most 19. Lowering a
//! thread's priority needs no privilege.

/// A runtime for background jobs. Shut down (without blocking) when dropped.
pub struct Background {
    runtime: Option<tokio::runtime::Runtime>,
    /// Where the jobs are spawned.
    pub handle: tokio::runtime::Handle,
}

impl Background {
    /// A runtime named `name` with `threads` worker threads (at least 1), each of its
    /// threads `nice` steps below the calling thread's priority (a nice value that much
    /// higher, at most 19, the lowest; 0 keeps the caller's). A thread whose priority
    /// cannot be set (a platform without per-thread priorities) keeps the caller's, with
    /// a warning logged.
    ///
    /// # Errors
    /// A message for a `nice` outside 0..=19, or when the runtime's threads cannot be
    /// started.
    pub fn new(name: &str, threads: usize, nice: i32) -> Result<Background, String> {
        if !(0..=19).contains(&nice) {
            return Err(format!(
                "{name}: nice must be between 0 (the server's priority) and 19 (the lowest), got {nice}"
            ));
        }
        // Absolute, from the caller's: a thread started by one of the runtime's own
        // (its blocking pool grows from its workers) inherits a lowered value already.
        let target = (own_priority() + nice).min(19);
        let thread_name = name.to_string();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .on_thread_start(move || {
                if nice != 0
                    && let Err(e) = set_priority(target)
                {
                    tracing::warn!(thread = %thread_name, error = %e, "cannot lower a background thread's priority");
                }
            })
            .enable_all()
            .build()
            .map_err(|e| format!("starting the {name} runtime: {e}"))?;
        Ok(Background {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

/// The calling thread's nice value (0 where it cannot be read).
#[cfg(target_os = "linux")]
fn own_priority() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0)
}

/// Sets the calling thread's nice value.
#[cfg(target_os = "linux")]
fn set_priority(nice: i32) -> std::io::Result<()> {
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
        .map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn own_priority() -> i32 {
    0
}

/// Per-thread priorities are set on Linux only.
#[cfg(not(target_os = "linux"))]
fn set_priority(_nice: i32) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "per-thread priorities are set on Linux only",
    ))
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice value of thread `tid`: field 19 of `/proc/self/task/<tid>/stat`.
    fn nice_of(tid: i32) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // After the command name's closing parenthesis: state is field 3, nice field 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn the_jobs_threads_run_at_the_nice_value_asked_and_the_callers_keep_theirs() {
        let own = nice_of(rustix::thread::gettid().as_raw_nonzero().get());
        let bg = Background::new("strata-test-bg", 2, 10).unwrap();
        let worker = bg.handle.block_on(async {
            tokio::spawn(async { rustix::thread::gettid().as_raw_nonzero().get() })
                .await
                .unwrap()
        });
        let blocking = bg.handle.block_on(async {
            tokio::task::spawn_blocking(|| rustix::thread::gettid().as_raw_nonzero().get())
                .await
                .unwrap()
        });
        // Ten steps below the caller's (at most 19), the blocking pool's threads too
        // (started by the workers, not lowered twice).
        assert_eq!(nice_of(worker), (own + 10).min(19));
        assert_eq!(nice_of(blocking), (own + 10).min(19));
        assert_eq!(
            nice_of(rustix::thread::gettid().as_raw_nonzero().get()),
            own,
            "the calling thread's priority is unchanged"
        );
        assert!(Background::new("x", 1, -5).is_err());
        assert!(Background::new("x", 1, 20).is_err());
    }
}
