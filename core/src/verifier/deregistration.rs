//! Deregistration (docs/PROTOCOL.md §6.5, D1–D9).

use super::checks::commit_rejection;
use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Verifies a deregistration (docs/PROTOCOL.md §6.5, steps D1–D9) and
    /// marks the credential deregistered.
    pub fn verify_deregistration(&self, statement: &[u8]) -> Result<CredentialId, Rejection> {
        let now = self.clock.now();
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
        if !crypto::ct_eq(&d.rp_id_hash, &self.rp_id_hash) {
            return reject(Step::D6RpId, Reason::WrongRp);
        }
        if cred.status == CredentialStatus::Deregistered {
            return reject(
                Step::D7CredentialStatus,
                Reason::CredentialNotActive(cred.status),
            );
        }
        if d.counter <= cred.counter {
            return reject(
                Step::D8Counter,
                Reason::CounterNotIncreased {
                    stored: cred.counter,
                    received: d.counter,
                },
            );
        }
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
