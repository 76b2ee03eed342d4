//! Deregistration (docs/PROTOCOL.md §6.5, D1–D9).

use super::checks::{check_counter_increased, commit_rejection};
use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Verifies a deregistration (docs/PROTOCOL.md §6.5, steps D1–D9) and
    /// marks the credential deregistered.
    pub fn verify_deregistration(&self, statement: &[u8]) -> Result<CredentialId, Rejection> {
        // D1–D3
        let opened = self.open_deregistration(statement)?;
        self.verify_opened_deregistration(opened)
    }

    /// Steps D4–D9 of a deregistration that [`Self::open_deregistration`]
    /// opened (a caller that checks the credential it names first decodes
    /// it once).
    pub fn verify_opened_deregistration(
        &self,
        opened: Opened<Deregistration>,
    ) -> Result<CredentialId, Rejection> {
        let now = self.clock.now();
        let Opened {
            statement,
            sign1,
            message: d,
            ..
        } = opened;
        let statement = statement.as_slice();
        // D4, D5
        let cred = self.check_signer(
            &sign1,
            &d.credential_id,
            [Step::D2Header, Step::D4Credential, Step::D5Signature],
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
