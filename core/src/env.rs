//! Injected time and randomness, so verification is deterministic under test.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, PoisonError,
};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that only moves when told to (tests, simulations, vectors).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at `now`.
    pub fn new(now: u64) -> Self {
        Self(AtomicU64::new(now))
    }
    /// Sets the time.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
    /// Moves the time forward.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> u64 {
        (**self).now()
    }
}

/// Randomness failed; nothing was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("random number generator failed")]
pub struct RandomError;

/// A source of cryptographically secure random bytes.
pub trait Random: Send + Sync {
    /// Fills `dest`.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError>;
}

/// The operating system's CSPRNG (ring's `SystemRandom`).
#[derive(Debug)]
pub struct SystemRandom(ring::rand::SystemRandom);

impl Default for SystemRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemRandom {
    /// The system generator.
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Random for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        ring::rand::SecureRandom::fill(&self.0, dest).map_err(|_| RandomError)
    }
}

impl<R: Random + ?Sized> Random for std::sync::Arc<R> {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        (**self).fill(dest)
    }
}

/// **Danger: predictable.** A deterministic generator (SHA-256 in counter
/// mode over a seed) for test vectors and reproducible simulations only. A
/// verifier using it issues guessable challenges.
#[derive(Debug)]
pub struct DangerDeterministicRandom {
    seed: [u8; 32],
    counter: Mutex<u64>,
}

impl DangerDeterministicRandom {
    /// A generator from `seed`.
    pub fn new(seed: &[u8]) -> Self {
        Self {
            seed: crate::crypto::sha256(seed),
            counter: Mutex::new(0),
        }
    }
}

impl Random for DangerDeterministicRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        let mut counter = self.counter.lock().unwrap_or_else(PoisonError::into_inner);
        for chunk in dest.chunks_mut(32) {
            let block = crate::crypto::sha256_parts(&[&self.seed, &counter.to_be_bytes()]);
            chunk.copy_from_slice(&block[..chunk.len()]);
            *counter += 1;
        }
        Ok(())
    }
}
