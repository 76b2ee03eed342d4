//! Failed-verification rate limiting per credential and per account: after
//! `max_failures` rejections within `window`, further statements for that
//! credential (or any credential of that account) are refused with HTTP 429
//! until the oldest failure leaves the window. Kept in memory per process.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// What a failure is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A credential id.
    Credential(Vec<u8>),
    /// An account handle.
    Account(Vec<u8>),
}

/// The limiter.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<Subject, VecDeque<Instant>>>,
}

impl FailureLimiter {
    /// Locks after `max_failures` within `window` (0 disables).
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any account is being counted (an account lookup is needed only then).
    pub fn tracks_accounts(&self) -> bool {
        let g = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        g.keys().any(|k| matches!(k, Subject::Account(_)))
    }

    /// Whether `subject` is locked now.
    pub fn is_locked(&self, subject: &Subject) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let now = Instant::now();
        let mut g = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(q) = g.get_mut(subject) else {
            return false;
        };
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
        if q.is_empty() {
            g.remove(subject);
            return false;
        }
        q.len() >= self.max_failures
    }

    /// Records a failure.
    pub fn fail(&self, subject: Subject) {
        if self.max_failures == 0 {
            return;
        }
        let now = Instant::now();
        let mut g = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let q = g.entry(subject).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
        // Never hold more than the limit: memory stays bounded per subject.
        if q.len() >= self.max_failures {
            q.pop_front();
        }
        q.push_back(now);
    }

    /// Forgets a subject's failures (after a success).
    pub fn clear(&self, subject: &Subject) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_n_failures_and_unlocks_after_the_window() {
        let l = FailureLimiter::new(3, Duration::from_millis(200));
        let s = Subject::Credential(vec![1]);
        for _ in 0..2 {
            l.fail(s.clone());
            assert!(!l.is_locked(&s));
        }
        l.fail(s.clone());
        assert!(l.is_locked(&s));
        assert!(!l.is_locked(&Subject::Credential(vec![2])));
        let start = Instant::now();
        while l.is_locked(&s) {
            assert!(start.elapsed() < Duration::from_secs(5), "never unlocked");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
