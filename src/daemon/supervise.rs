//! The service's long-lived tasks, each under its name.
//!
//! None of them ends by itself while the service runs: a reader, the recorder, delivery, the
//! pruner, the timekeeper, the screen and the rest each run until the stop. So one that ends
//! before the stop (returns, or panics) is a failure of the service, never a quiet retirement:
//! [`Tasks::next_ended`] says which, [`super::Service::run`] logs it at ERROR with the task's
//! name and the process exits 1, for systemd to start it again.
//!
//! A panic aborts the process (`panic = "abort"` in Cargo.toml), so no task ever sees another
//! task's panic: [`install_panic_hook`] logs it first, at ERROR, with the name of the task it
//! happened in. Built with unwinding instead, the panic reaches [`Tasks::next_ended`] and ends
//! the service the same way.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::clock::timer::{self, Instant};
use tokio::task::{Id, JoinSet};
use tracing::error;

tokio::task_local! {
    /// The name of the supervised task being polled, for the panic hook.
    static TASK: Arc<str>;
}

/// A task that ended, and how.
#[derive(Debug)]
pub struct Ended {
    pub task: Arc<str>,
    /// `None`: it returned. `Some`: it panicked, or was cancelled, with this message.
    pub failure: Option<String>,
}

/// The tasks of the service, by name.
#[derive(Debug, Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, Arc<str>>,
}

impl Tasks {
    /// Starts `task` under `name`.
    pub fn spawn<F>(&mut self, name: impl Into<Arc<str>>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let task = with_test_panic(&name, task);
        let handle = self.set.spawn(TASK.scope(name.clone(), task));
        self.names.insert(handle.id(), name);
    }

    /// The next task to end; `None` when none is left.
    pub async fn next_ended(&mut self) -> Option<Ended> {
        let joined = self.set.join_next_with_id().await?;
        let (id, failure) = match joined {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), Some(describe_join_error(e))),
        };
        let task = self
            .names
            .remove(&id)
            .unwrap_or_else(|| Arc::from("unnamed task"));
        Some(Ended { task, failure })
    }

    /// Waits for every task to end until `deadline`; the ones still running then are aborted
    /// and their names returned.
    pub async fn wait_all(&mut self, deadline: Instant) -> Vec<Arc<str>> {
        loop {
            match timer::timeout_at(deadline, self.next_ended()).await {
                Ok(Some(_)) => {}
                Ok(None) => return Vec::new(),
                Err(_) => {
                    let mut late: Vec<Arc<str>> = self.names.drain().map(|(_, n)| n).collect();
                    late.sort();
                    self.set.abort_all();
                    while self.set.join_next().await.is_some() {}
                    return late;
                }
            }
        }
    }
}

fn describe_join_error(error: tokio::task::JoinError) -> String {
    if error.is_cancelled() {
        return "cancelled".into();
    }
    match error.try_into_panic() {
        Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
        Err(error) => error.to_string(),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

/// Logs every panic at ERROR, with the supervised task (or the thread) it happened in, before
/// the default hook prints it and the process aborts.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        match TASK.try_with(Arc::clone) {
            Ok(task) => error!(
                task = %task,
                location = %location,
                "task {task} panicked: {message}; the service stops (systemd starts it again)"
            ),
            Err(_) => {
                let thread = std::thread::current();
                let thread = thread.name().unwrap_or("unnamed");
                error!(thread, location = %location, "panicked in thread {thread}: {message}");
            }
        }
        previous(info);
    }));
}

/// In a debug build, `GYM_CHECKIN_TEST_PANIC=<task>` makes that task panic once the service
/// runs, so the tests can show what a panic does. Release builds ignore it.
#[cfg(debug_assertions)]
fn with_test_panic<F>(name: &str, task: F) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
where
    F: Future<Output = ()> + Send + 'static,
{
    if std::env::var("GYM_CHECKIN_TEST_PANIC").is_ok_and(|wanted| wanted == name) {
        let name = name.to_string();
        return Box::pin(async move {
            tokio::task::yield_now().await;
            panic!("{name} was asked to panic (GYM_CHECKIN_TEST_PANIC)");
        });
    }
    Box::pin(task)
}

#[cfg(not(debug_assertions))]
fn with_test_panic<F>(_name: &str, task: F) -> F
where
    F: Future<Output = ()> + Send + 'static,
{
    task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_returns_is_named_when_it_ends() {
        let mut tasks = Tasks::default();
        let (_keep, mut never) = tokio::sync::watch::channel(());
        tasks.spawn("recorder", async move {
            let _ = never.changed().await;
        });
        tasks.spawn("reader entrance", async {});
        let ended = tasks.next_ended().await.unwrap();
        assert_eq!(&*ended.task, "reader entrance");
        assert!(ended.failure.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_do_not_stop_in_time_are_named_and_aborted() {
        let mut tasks = Tasks::default();
        tasks.spawn("stuck", std::future::pending());
        tasks.spawn("quick", async {});
        let late = tasks
            .wait_all(Instant::now() + std::time::Duration::from_secs(5))
            .await;
        assert_eq!(late, vec![Arc::<str>::from("stuck")]);
        assert!(tasks.next_ended().await.is_none(), "nothing is left");
    }
}
