//! The simulated user in front of the sensors and the trusted UI, and the
//! faults a test can inject.

use biopay_core::Modality;
use std::collections::VecDeque;

/// What the user presents to a biometric sensor at one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presentation {
    /// A finger: matches when a fingerprint with this label is enrolled;
    /// any other label is a non-matching finger.
    Finger(String),
    /// A live face: matches when a face is enrolled.
    Face,
    /// A presentation attack (a fake finger or a photo): the liveness check fails.
    Spoof(Modality),
    /// The user dismisses the biometric prompt.
    Cancel,
}

impl Presentation {
    /// The sensor this presentation is made to (`None` for [`Self::Cancel`]).
    pub fn modality(&self) -> Option<Modality> {
        match self {
            Self::Finger(_) => Some(Modality::Fingerprint),
            Self::Face => Some(Modality::Face),
            Self::Spoof(m) => Some(*m),
            Self::Cancel => None,
        }
    }
}

/// Scripted user behaviour: queued biometric presentations and trusted-UI
/// decisions. Not persisted (the user is not part of the device).
#[derive(Debug, Clone, Default)]
pub struct SimulatedUser {
    presentations: VecDeque<Presentation>,
    confirmations: VecDeque<bool>,
}

impl SimulatedUser {
    /// Queues a presentation; one is consumed per biometric attempt. An
    /// attempt with an empty queue is a canceled prompt.
    pub fn present(&mut self, p: Presentation) -> &mut Self {
        self.presentations.push_back(p);
        self
    }

    /// Queues a trusted-UI decision; one is consumed per transaction prompt.
    /// With an empty queue the user confirms.
    pub fn will_confirm(&mut self, yes: bool) -> &mut Self {
        self.confirmations.push_back(yes);
        self
    }

    /// Presentations not consumed yet.
    pub fn pending_presentations(&self) -> usize {
        self.presentations.len()
    }

    /// Drops every queued presentation and decision.
    pub fn clear(&mut self) -> &mut Self {
        self.presentations.clear();
        self.confirmations.clear();
        self
    }

    pub(crate) fn next_presentation(&mut self) -> Option<Presentation> {
        self.presentations.pop_front()
    }

    pub(crate) fn next_confirmation(&mut self) -> bool {
        self.confirmations.pop_front().unwrap_or(true)
    }
}

/// Faults injected into the device (not persisted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Added to the clock to give TEE time (negative: the TEE clock is behind).
    pub clock_skew_secs: i64,
}
