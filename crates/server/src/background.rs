//! Background jobs (test-time alignment): a bounded queue served by at
//! most `limits.align_jobs` worker threads, at most one job per user at a
//! time, and the jobs' states, of which the finished are kept up to a bound
//! so a server that runs for months does not grow with them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use persona_agent::AlignConfig;
use serde_json::{json, Value};

use crate::error::ApiError;

/// Finished jobs whose state is kept (the oldest are forgotten first).
pub const KEEP_FINISHED: usize = 1024;

/// An alignment job waiting for a worker.
#[derive(Debug, Clone)]
pub struct AlignTask {
    /// The job id (`align-…`).
    pub id: String,
    /// The user whose persona it aligns.
    pub user: String,
    /// Replays per iteration and iterations.
    pub config: AlignConfig,
}

/// What [`Background::submit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    /// A new worker thread must be started for the queue.
    StartWorker,
    /// A running worker will take the job.
    Queued,
}

#[derive(Default)]
struct Inner {
    states: HashMap<String, Value>,
    finished: VecDeque<String>,
    pending: VecDeque<AlignTask>,
    /// Users with a job queued or running, and that job.
    busy: HashMap<String, String>,
    workers: usize,
}

/// The background jobs' queue and states.
#[derive(Default)]
pub struct Background {
    inner: Mutex<Inner>,
}

impl Background {
    /// The table, also after a thread panicked while holding it: no code
    /// here panics between two updates that belong together, so the table
    /// is whole, and refusing every later job (or losing a finished job's
    /// state) would be worse than going on.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `task` (its state `queued`): refused with 409 while the user
    /// has a job queued or running, and with 503 when `max_pending` jobs
    /// already wait. Says whether a worker must be started (fewer than
    /// `max_workers` run).
    pub fn submit(&self, task: AlignTask, max_workers: usize, max_pending: usize) -> Result<Submitted, ApiError> {
        let mut inner = self.lock();
        if let Some(job) = inner.busy.get(&task.user) {
            return Err(ApiError::conflict(
                format!("user '{}' already has an alignment job queued or running ({job}); wait for it (GET /v1/jobs/{job})", task.user),
                "user",
                "job_in_progress",
            ));
        }
        if inner.pending.len() >= max_pending {
            return Err(ApiError::overloaded_jobs(max_pending));
        }
        inner.states.insert(task.id.clone(), job_state(&task, "queued", json!({})));
        inner.busy.insert(task.user.clone(), task.id.clone());
        inner.pending.push_back(task);
        if inner.workers < max_workers {
            inner.workers += 1;
            Ok(Submitted::StartWorker)
        } else {
            Ok(Submitted::Queued)
        }
    }

    /// The next job for a worker (its state becomes `running`), or none:
    /// then the worker is counted out and must end.
    pub fn next(&self) -> Option<AlignTask> {
        let mut inner = self.lock();
        match inner.pending.pop_front() {
            Some(task) => {
                inner.states.insert(task.id.clone(), job_state(&task, "running", json!({})));
                Some(task)
            }
            None => {
                inner.workers = inner.workers.saturating_sub(1);
                None
            }
        }
    }

    /// Records how `task` ended (`succeeded` or `failed`, with `extra`
    /// fields) and frees its user for another job.
    pub fn finish(&self, task: &AlignTask, status: &str, extra: Value) {
        let mut inner = self.lock();
        inner.states.insert(task.id.clone(), job_state(task, status, extra));
        if inner.busy.get(&task.user) == Some(&task.id) {
            inner.busy.remove(&task.user);
        }
        inner.finished.push_back(task.id.clone());
        while inner.finished.len() > KEEP_FINISHED {
            if let Some(old) = inner.finished.pop_front() {
                inner.states.remove(&old);
            }
        }
    }

    /// A worker could not start: it is counted out, and when no worker is
    /// left the queued jobs fail with `error` (nothing would run them).
    pub fn worker_failed(&self, error: &ApiError) {
        let orphans = {
            let mut inner = self.lock();
            inner.workers = inner.workers.saturating_sub(1);
            if inner.workers > 0 {
                return;
            }
            inner.pending.drain(..).collect::<Vec<_>>()
        };
        for task in orphans {
            self.finish(&task, "failed", json!({"error": error.message}));
        }
    }

    /// A job's last state.
    pub fn state(&self, id: &str) -> Option<Value> {
        self.lock().states.get(id).cloned()
    }
}

/// A job's state as `GET /v1/jobs/{job}` answers it.
fn job_state(task: &AlignTask, status: &str, extra: Value) -> Value {
    let mut v = json!({"id": task.id, "object": "job", "kind": "align", "user": task.user, "status": status});
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, user: &str) -> AlignTask {
        AlignTask { id: id.into(), user: user.into(), config: AlignConfig::default() }
    }

    #[test]
    fn one_job_per_user_bounded_workers_and_queue() {
        let b = Background::default();
        assert_eq!(b.submit(task("a1", "ann"), 1, 2).unwrap(), Submitted::StartWorker);
        let again = b.submit(task("a2", "ann"), 1, 2).unwrap_err();
        assert_eq!((again.status.as_u16(), again.code), (409, Some("job_in_progress")));
        assert!(again.message.contains("a1"), "{}", again.message);
        assert_eq!(b.submit(task("b1", "bob"), 1, 2).unwrap(), Submitted::Queued, "one worker at most");
        assert_eq!(b.submit(task("c1", "cat"), 1, 2).unwrap_err().status.as_u16(), 503, "two wait already");
        assert_eq!(b.state("b1").unwrap()["status"], "queued");
        let first = b.next().unwrap();
        assert_eq!((first.id.as_str(), b.state("a1").unwrap()["status"].as_str()), ("a1", Some("running")));
        b.finish(&first, "succeeded", json!({"result": {"iterations": 1}}));
        assert_eq!(b.state("a1").unwrap()["result"]["iterations"], 1);
        assert_eq!(b.submit(task("a3", "ann"), 1, 2).unwrap(), Submitted::Queued, "ann is free again");
        assert_eq!(b.next().unwrap().id, "b1");
        assert_eq!(b.next().unwrap().id, "a3");
        assert!(b.next().is_none());
        assert_eq!(b.submit(task("d1", "dan"), 1, 2).unwrap(), Submitted::StartWorker, "the worker ended");
    }

    #[test]
    fn a_panic_while_holding_the_table_does_not_stop_the_queue() {
        let b = std::sync::Arc::new(Background::default());
        let holder = b.clone();
        let _ = std::thread::spawn(move || {
            let _guard = holder.inner.lock().unwrap();
            panic!("a thread dies holding the job table");
        })
        .join();
        assert!(b.inner.is_poisoned());
        assert_eq!(b.submit(task("a1", "ann"), 1, 1).unwrap(), Submitted::StartWorker);
        assert_eq!(b.next().unwrap().id, "a1");
        assert_eq!(b.state("a1").unwrap()["status"], "running");
    }

    #[test]
    fn finished_jobs_are_kept_up_to_the_bound() {
        let b = Background::default();
        for i in 0..KEEP_FINISHED + 5 {
            let t = task(&format!("j{i}"), "ann");
            b.submit(t.clone(), 1, 1).unwrap();
            let t = b.next().unwrap();
            b.finish(&t, "succeeded", json!({}));
        }
        assert!(b.state("j0").is_none() && b.state("j4").is_none());
        assert_eq!(b.state("j5").unwrap()["status"], "succeeded");
        assert_eq!(b.inner.lock().unwrap().states.len(), KEEP_FINISHED);
    }

    #[test]
    fn a_worker_that_cannot_start_fails_the_queue() {
        let b = Background::default();
        b.submit(task("a1", "ann"), 1, 4).unwrap();
        b.worker_failed(&ApiError::internal("no threads"));
        assert_eq!(b.state("a1").unwrap()["status"], "failed");
        assert_eq!(b.state("a1").unwrap()["error"], "no threads");
        assert_eq!(b.submit(task("a2", "ann"), 1, 4).unwrap(), Submitted::StartWorker);
    }
}
