//! Deregistration (docs/PROTOCOL.md §6.5, D1–D9).

use super::checks::{check_counter_increased, commit_rejection};
use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Verifies a deregistration (docs/PROTOCOL.md §6.5, steps D1–D9) and
    /// marks the credential deregistered.
    pub fn verify_deregistration(&self, statement: &[u8]) -> Result<CredentialId, Rejection> {
        let now = self.clock.now();
        // D1–D5
        let (d, cred): (Deregistration, _) = self.open_signed(
            statement,
            [
                Step::D1Statement,
                Step::D2Header,
                Step::D3Payload,
                Step::D4Credential,
                Step::D5Signature,
            ],
            |d: &Deregistration| &d.credential_id,
        )?;
        // D6
        self.check_rp_id(Step::D6RpId, &d.rp_id_hash)?;
        // D7
        if cred.status == CredentialStatus::Deregistered {
            return reject(
                Step::D7CredentialStatus,
                Reason::CredentialNotActive(cred.status),
            );
        }
        // D8
        check_counter_increased(Step::D8Counter, cred.counter, d.counter)?;
        // D9
        let decision = self.decision(
            DecisionKind::Deregistration,
            &cred.credential_id,
            statement,
            now,
        );
        self.store
            .commit_status(
                &cred.credential_id,
                cred.counter,
                d.counter,
                cred.status,
                CredentialStatus::Deregistered,
                &decision,
            )
            .map_err(|e| commit_rejection(Step::D9Commit, e))?;
        Ok(cred.credential_id)
    }
}
