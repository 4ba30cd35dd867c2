//! The sandboxes the daemon knows: running ones, and a bounded history of finished ones.
//!
//! Two bounds keep the daemon's memory flat however many sandboxes it runs:
//! - at most `history` finished sandboxes are kept (oldest forgotten first);
//! - their output (up to 1 MiB per stream each) is kept only within
//!   [`HISTORY_OUTPUT_BUDGET`] bytes in all; beyond it the oldest output is dropped and the
//!   record says so (`output_dropped`). A caller waiting on a sandbox gets its output from
//!   the answer itself, so dropping old output never loses one.
//!
//! Admission is here too: a [`Slot`] is taken before anything is started and given back
//! when the container is gone, so no more than `max_running` containers exist at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::info::{EndedBy, SandboxInfo};

/// Bytes of output kept across all finished sandboxes: 32 full 1 MiB streams, about a
/// minute of an agent's work, and small next to a sandbox's own 512 MiB.
pub const HISTORY_OUTPUT_BUDGET: usize = 64 * 1024 * 1024;

/// Commands one sandbox may run at once through `exec`: each holds up to two output
/// buffers of `DEFAULT_OUTPUT_CAP`, so this bounds what one sandbox's execs cost the daemon
/// (8 MiB); more wait for none — they are refused (429).
pub const MAX_EXECS_PER_SANDBOX: usize = 4;

/// One sandbox the daemon started.
#[derive(Debug)]
pub struct Record {
    /// The current view; waiters subscribe and wake when it is final.
    pub info: watch::Sender<Arc<SandboxInfo>>,
    /// The backend's id of the container.
    pub container: String,
    /// Why it was asked to end (first asker wins), so the end reads "stopped", not
    /// "exited", and says by what.
    end_requested: std::sync::OnceLock<EndedBy>,
    /// Commands running in it now (`exec`), bounded by [`MAX_EXECS_PER_SANDBOX`].
    pub execs: Arc<tokio::sync::Semaphore>,
    /// What its egress proxy refused so far (bridge sandboxes with `egress = "aws"`).
    egress: Option<Arc<crate::egress::SandboxEgress>>,
}

impl Record {
    pub fn new(info: SandboxInfo, container: String) -> Self {
        Self {
            info: watch::channel(Arc::new(info)).0,
            container,
            end_requested: std::sync::OnceLock::new(),
            execs: Arc::new(tokio::sync::Semaphore::new(MAX_EXECS_PER_SANDBOX)),
            egress: None,
        }
    }

    /// Follows the sandbox's egress (its refusals show in [`Self::current`]).
    pub fn with_egress(mut self, egress: Option<Arc<crate::egress::SandboxEgress>>) -> Self {
        self.egress = egress;
        self
    }

    /// The whole view now: the snapshot, with the egress refusals of a running sandbox.
    pub fn current(&self) -> SandboxInfo {
        let mut info = (*self.snapshot()).clone();
        if let Some(egress) = &self.egress
            && !info.finished()
        {
            info.egress_refused = egress.refusals();
        }
        info
    }

    /// Asks for its end for `reason`; the first reason asked for is the one kept.
    pub fn request_end(&self, reason: EndedBy) {
        let _ = self.end_requested.set(reason);
    }

    /// Why its end was asked for, if it was.
    pub fn end_requested(&self) -> Option<EndedBy> {
        self.end_requested.get().copied()
    }

    pub fn snapshot(&self) -> Arc<SandboxInfo> {
        self.info.borrow().clone()
    }

    pub fn finished(&self) -> bool {
        self.info.borrow().finished()
    }

    /// Waits until the sandbox has ended; answers its final view.
    pub async fn ended(&self) -> Arc<SandboxInfo> {
        let mut updates = self.info.subscribe();
        let outcome = updates.wait_for(|info| info.finished()).await;
        match outcome {
            Ok(info) => info.clone(),
            // The sender lives in `self`, so it cannot be gone while we borrow it.
            Err(_) => self.snapshot(),
        }
    }
}

#[derive(Debug, Default)]
struct Known {
    records: HashMap<String, Arc<Record>>,
    /// Finished sandboxes, oldest first.
    finished: VecDeque<String>,
    /// Output bytes held by finished records.
    output_bytes: usize,
}

/// Running and recently finished sandboxes, and the admission count.
#[derive(Debug, Default)]
pub struct Registry {
    known: Mutex<Known>,
    slots: Arc<AtomicUsize>,
}

/// A place among the `max_running`; given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Registry {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().expect("sandbox registry lock")
    }

    /// Takes a slot when fewer than `max` are taken.
    pub fn reserve(&self, max: usize) -> Option<Slot> {
        self.slots
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |taken| {
                (taken < max).then_some(taken + 1)
            })
            .ok()
            .map(|_| Slot(self.slots.clone()))
    }

    /// Sandboxes starting or running (their containers may exist).
    pub fn slots_taken(&self) -> usize {
        self.slots.load(Ordering::SeqCst)
    }

    pub fn insert(&self, id: String, record: Arc<Record>) {
        self.known().records.insert(id, record);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Record>> {
        self.known().records.get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Record>> {
        self.known().records.values().cloned().collect()
    }

    /// Puts the final view of a sandbox in force and applies the history bounds.
    pub fn finish(&self, id: &str, record: &Record, info: SandboxInfo, history: usize) {
        let mut known = self.known();
        known.output_bytes += info.output_bytes();
        record.info.send_replace(Arc::new(info));
        known.finished.push_back(id.to_owned());
        while known.finished.len() > history {
            let Some(oldest) = known.finished.pop_front() else {
                break;
            };
            if let Some(gone) = known.records.remove(&oldest) {
                known.output_bytes -= gone.snapshot().output_bytes();
            }
        }
        let mut index = 0;
        while known.output_bytes > HISTORY_OUTPUT_BUDGET && index < known.finished.len() {
            let victim = known.records.get(&known.finished[index]).cloned();
            index += 1;
            let Some(victim) = victim else { continue };
            let current = victim.snapshot();
            if current.output_bytes() == 0 {
                continue;
            }
            known.output_bytes -= current.output_bytes();
            let mut lighter = current.summary();
            lighter.output_dropped = true;
            victim.info.send_replace(Arc::new(lighter));
        }
    }

    /// Output bytes held by finished sandboxes.
    #[cfg(test)]
    fn output_bytes(&self) -> usize {
        self.known().output_bytes
    }

    /// Number of records, running and finished.
    pub fn len(&self) -> usize {
        self.known().records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxState;

    fn info(id: &str, state: SandboxState, output: usize) -> SandboxInfo {
        SandboxInfo {
            id: id.into(),
            integration: "prod".into(),
            image: "img".into(),
            command: vec!["true".into()],
            state,
            kind: super::super::info::SandboxKind::Command,
            ended_by: None,
            created_at: String::new(),
            deadline: String::new(),
            deadline_note: None,
            credentials_expire_at: String::new(),
            session: crate::config::SessionMode::Shared,
            session_name: None,
            capabilities: None,
            credentials: crate::config::CredentialsDelivery::Env,
            egress_refused: Vec::new(),
            exit_code: None,
            stdout: (output > 0).then(|| "x".repeat(output).into()),
            stderr: None,
            stdout_truncated: false,
            stderr_truncated: false,
            output_dropped: false,
            duration_ms: None,
            timed_out: false,
            error: None,
        }
    }

    fn run_and_finish(registry: &Registry, id: &str, output: usize, history: usize) {
        let record = Arc::new(Record::new(
            info(id, SandboxState::Running, 0),
            format!("c-{id}"),
        ));
        registry.insert(id.into(), record.clone());
        registry.finish(id, &record, info(id, SandboxState::Exited, output), history);
    }

    #[test]
    fn slots_stop_at_the_maximum_and_come_back_when_dropped() {
        let registry = Registry::default();
        let slots: Vec<Slot> = (0..3).filter_map(|_| registry.reserve(3)).collect();
        assert_eq!(slots.len(), 3);
        assert!(registry.reserve(3).is_none());
        drop(slots);
        assert_eq!(registry.slots_taken(), 0);
        assert!(registry.reserve(3).is_some());
    }

    #[test]
    fn history_keeps_the_newest_finished_sandboxes() {
        let registry = Registry::default();
        let running = Arc::new(Record::new(
            info("running", SandboxState::Running, 0),
            "c".into(),
        ));
        registry.insert("running".into(), running);
        for i in 0..1000 {
            run_and_finish(&registry, &format!("s{i}"), 10, 50);
        }
        assert_eq!(registry.len(), 51, "50 finished + the running one");
        assert!(registry.get("s999").is_some() && registry.get("s950").is_some());
        assert!(registry.get("s949").is_none());
        assert!(
            registry.get("running").is_some(),
            "running ones are never forgotten"
        );
        assert_eq!(registry.output_bytes(), 50 * 10);
    }

    #[test]
    fn old_output_is_dropped_beyond_the_budget_and_the_record_says_so() {
        let registry = Registry::default();
        let big = 4 * 1024 * 1024;
        let count = HISTORY_OUTPUT_BUDGET / big + 5;
        for i in 0..count {
            run_and_finish(&registry, &format!("s{i}"), big, 500);
        }
        assert!(registry.output_bytes() <= HISTORY_OUTPUT_BUDGET);
        let oldest = registry.get("s0").unwrap().snapshot();
        assert!(oldest.output_dropped && oldest.stdout.is_none());
        let newest = registry.get(&format!("s{}", count - 1)).unwrap().snapshot();
        assert!(!newest.output_dropped);
        assert_eq!(newest.stdout.as_ref().map(|s| s.len()), Some(big));
    }
}
