//! Issuing and storing challenges (docs/PROTOCOL.md §6.1.3, §6.2).

use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    fn fresh_challenge(&self) -> Result<Challenge, IssueError> {
        let mut c = [0u8; CHALLENGE_LEN];
        self.random.fill(&mut c)?;
        Ok(c)
    }

    /// Stores an issued challenge under the per-account limit (§6.1.3).
    fn store_challenge(&self, issued: IssuedChallenge, now: u64) -> Result<(), IssueError> {
        let max = self.policy.max_challenges_per_account;
        let limit = (max > 0).then_some(ChallengeLimit { max, now });
        if self.store.insert_challenge(issued, limit)? {
            Ok(())
        } else {
            Err(IssueError::TooManyChallenges { max })
        }
    }

    /// Issues and stores a registration challenge.
    pub fn registration_challenge(
        &self,
        account_handle: &[u8],
        accepted_modalities: &[Modality],
        required_assurance: SecurityLevel,
    ) -> Result<RegistrationChallenge, IssueError> {
        let now = self.clock.now();
        let mut modalities = accepted_modalities.to_vec();
        modalities.sort();
        modalities.dedup();
        let challenge = RegistrationChallenge {
            rp_id: self.rp_id.clone(),
            account_handle: account_handle.to_vec(),
            challenge: self.fresh_challenge()?,
            issued_at: now,
            expires_at: now.saturating_add(self.policy.challenge_ttl_secs.max(1)),
            accepted_modalities: modalities,
            required_assurance: required_assurance.max(self.policy.min_security_level),
            credential_id_prefix: crate::routing::credential_id_prefix(&self.rp_id, account_handle),
        };
        // Round-trip through the strict decoder: whatever we issue must be valid.
        RegistrationChallenge::from_cbor(&challenge.to_cbor())?;
        self.store_challenge(IssuedChallenge::Registration(challenge.clone()), now)?;
        Ok(challenge)
    }

    /// Issues and stores a payment challenge for `transaction`, to be signed by `credential_id`.
    /// The accepted modalities and the liveness requirement follow the policy for the amount.
    pub fn payment_challenge(
        &self,
        credential_id: &CredentialId,
        transaction: Transaction,
    ) -> Result<PaymentChallenge, IssueError> {
        transaction.validate()?;
        let cred = self
            .store
            .credential(credential_id)?
            .ok_or(IssueError::CredentialNotUsable)?;
        if cred.status != CredentialStatus::Active || cred.rp_id != self.rp_id {
            return Err(IssueError::CredentialNotUsable);
        }
        let high_value = self.is_high_value(&transaction);
        let face_required = high_value
            && match self.policy.high_value_requirement {
                HighValueRequirement::FaceWithLiveness => true,
                HighValueRequirement::StrongBox => false,
                HighValueRequirement::FaceWithLivenessOrStrongBox => {
                    cred.security_level < SecurityLevel::StrongBox
                }
            };
        // Never issue a challenge the credential cannot satisfy. A
        // platform-keystore credential's liveness claim is made by the app,
        // so it never satisfies a face-with-liveness requirement (§12.6).
        let face_trusted = cred.kind == CredentialKind::TeeAttested;
        let satisfiable = !high_value
            || match self.policy.high_value_requirement {
                HighValueRequirement::StrongBox => cred.security_level >= SecurityLevel::StrongBox,
                _ => !face_required || (face_trusted && cred.modalities.contains(&Modality::Face)),
            };
        if !satisfiable {
            return Err(IssueError::PolicyUnsatisfiable);
        }
        let accepted_modalities = if face_required {
            vec![Modality::Face]
        } else {
            cred.modalities.clone()
        };
        let now = self.clock.now();
        let challenge = PaymentChallenge {
            rp_id: self.rp_id.clone(),
            account_handle: cred.account_handle.clone(),
            credential_id: credential_id.clone(),
            challenge: self.fresh_challenge()?,
            transaction,
            issued_at: now,
            expires_at: now.saturating_add(self.policy.challenge_ttl_secs.max(1)),
            accepted_modalities,
            require_liveness: face_required,
        };
        PaymentChallenge::from_cbor(&challenge.to_cbor())?;
        self.store_challenge(
            IssuedChallenge::Payment {
                challenge: challenge.clone(),
                counter_at_issue: cred.counter,
            },
            now,
        )?;
        Ok(challenge)
    }

    pub(super) fn is_high_value(&self, tx: &Transaction) -> bool {
        self.policy
            .high_value_thresholds
            .get(&tx.currency)
            .is_some_and(|t| tx.amount_minor >= *t)
    }

    /// Deletes expired challenges from the store.
    pub fn purge_expired_challenges(&self) -> Result<usize, StoreError> {
        self.store.purge_expired_challenges(self.clock.now())
    }
}
