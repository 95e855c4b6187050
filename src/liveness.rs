//! Liveness of the service's tasks, for systemd's watchdog.
//!
//! The watchdog asks every task, in turn, to answer (a new generation on a watch channel); each
//! task answers from its own `select!`, so a task stuck anywhere (a hung device, a database call
//! that never returns) stops answering. `WATCHDOG=1` is sent only while all of them answer: if
//! one is stuck, systemd restarts the service.
//!
//! A task that is gone answers nothing: dropping its [`Pulse`] (the task returned, or was never
//! polled again) leaves it silent, so the watchdog stops being fed. Only [`Pulse::retire`], an
//! explicit call, takes a task off the list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Marks a task retired by [`Pulse::retire`]: it is no longer asked.
const RETIRED: u64 = u64::MAX;

/// The watchdog's side: hands out a [`Pulse`] per task, asks them all, and names the silent.
#[derive(Debug)]
pub struct Liveness {
    generation: watch::Sender<u64>,
    tasks: Vec<(String, Arc<AtomicU64>)>,
}

/// A task's side: await [`Pulse::asked`] in the task's `select!` and [`Pulse::answer`] it.
#[derive(Debug)]
pub struct Pulse {
    asked: watch::Receiver<u64>,
    answered: Arc<AtomicU64>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            generation: watch::channel(0).0,
            tasks: Vec::new(),
        }
    }
}

impl Liveness {
    /// A pulse for a new task called `name`.
    pub fn register(&mut self, name: impl Into<String>) -> Pulse {
        let answered = Arc::new(AtomicU64::new(*self.generation.borrow()));
        self.tasks.push((name.into(), answered.clone()));
        Pulse {
            asked: self.generation.subscribe(),
            answered,
        }
    }

    /// The tasks that have not answered the last question; then asks the next one.
    pub fn check_and_ask(&self) -> Vec<&str> {
        let current = *self.generation.borrow();
        let silent = self
            .tasks
            .iter()
            .filter(|(_, answered)| {
                let answered = answered.load(Ordering::Acquire);
                answered != current && answered != RETIRED
            })
            .map(|(name, _)| name.as_str())
            .collect();
        self.generation.send_replace(current + 1);
        silent
    }
}

impl Pulse {
    /// Completes when the watchdog asks (never, once the asking side is gone).
    pub async fn asked(&mut self) {
        if self.asked.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn answer(&self) {
        self.answered.store(*self.asked.borrow(), Ordering::Release);
    }

    /// Takes the task off the watchdog's list: it has ended on purpose and is no longer asked.
    /// Dropping a pulse does not do this: a task that is gone is silent.
    pub fn retire(self) {
        self.answered.store(RETIRED, Ordering::Release);
    }

    /// A pulse no one asks (for tasks run outside the service, e.g. `listen`).
    pub fn unwatched() -> Pulse {
        let (_sender, asked) = watch::channel(0);
        Pulse {
            asked,
            answered: Arc::new(AtomicU64::new(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_does_not_answer_is_named() {
        let mut liveness = Liveness::default();
        let mut recorder = liveness.register("recorder");
        let _stuck = liveness.register("delivery");
        let ended = liveness.register("reader entrance");
        ended.retire();
        assert!(
            liveness.check_and_ask().is_empty(),
            "all answered generation 0"
        );
        recorder.asked().await;
        recorder.answer();
        assert_eq!(liveness.check_and_ask(), vec!["delivery"]);
    }

    #[tokio::test]
    async fn a_task_whose_pulse_is_dropped_is_silent_not_retired() {
        let mut liveness = Liveness::default();
        let mut recorder = liveness.register("recorder");
        let gone = liveness.register("reader entrance");
        assert!(liveness.check_and_ask().is_empty());
        drop(gone);
        recorder.asked().await;
        recorder.answer();
        assert_eq!(liveness.check_and_ask(), vec!["reader entrance"]);
        recorder.asked().await;
        recorder.answer();
        assert_eq!(
            liveness.check_and_ask(),
            vec!["reader entrance"],
            "it stays silent at every later question"
        );
    }
}
