//! Enrollment change (docs/PROTOCOL.md §6.6, E1–E10).

use super::checks::{check_counter_increased, commit_rejection};
use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Verifies an enrollment change (docs/PROTOCOL.md §6.6, steps E1–E10)
    /// and blocks the credential until re-registration.
    pub fn verify_enrollment_change(&self, statement: &[u8]) -> Result<CredentialId, Rejection> {
        let now = self.clock.now();
        // E1–E5
        let (e, cred): (EnrollmentChange, _) = self.open_signed(
            statement,
            [
                Step::E1Statement,
                Step::E2Header,
                Step::E3Payload,
                Step::E4Credential,
                Step::E5Signature,
            ],
            |e: &EnrollmentChange| &e.credential_id,
        )?;
        // E6
        self.check_rp_id(Step::E6RpId, &e.rp_id_hash)?;
        // E7: only an active (or already blocked by P15) credential can be moved
        // to enrollment_changed: a clone must not be able to overwrite
        // `suspected_clone` or `suspended`.
        if !matches!(
            cred.status,
            CredentialStatus::Active | CredentialStatus::EnrollmentChanged
        ) {
            return reject(
                Step::E7CredentialStatus,
                Reason::CredentialNotActive(cred.status),
            );
        }
        // E8
        if !crypto::ct_eq(&e.previous_epoch, &cred.enrollment_epoch)
            || crypto::ct_eq(&e.current_epoch, &e.previous_epoch)
        {
            return reject(Step::E8Epoch, Reason::EpochMismatch);
        }
        // E9
        check_counter_increased(Step::E9Counter, cred.counter, e.counter)?;
        // E10
        let decision = self.decision(
            DecisionKind::EnrollmentChange,
            &cred.credential_id,
            statement,
            now,
        );
        self.store
            .commit_status(
                &cred.credential_id,
                cred.counter,
                e.counter,
                cred.status,
                CredentialStatus::EnrollmentChanged,
                &decision,
            )
            .map_err(|err| commit_rejection(Step::E10Commit, err))?;
        Ok(cred.credential_id)
    }
}
