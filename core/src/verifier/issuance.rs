//! Issuing and storing challenges (docs/PROTOCOL.md §6.1.3, §6.2).

use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    fn fresh_challenge(&self) -> Result<Challenge, IssueError> {
        let mut c = [0u8; CHALLENGE_LEN];
        self.random.fill(&mut c)?;
        Ok(c)
    }

    /// Stores an issued challenge under the per-account limit (§6.1.3). The
    /// account's self-authenticating payment challenges outstanding in this
    /// process count toward it.
    fn store_challenge(&self, issued: IssuedChallenge, now: u64) -> Result<(), IssueError> {
        let max = self.policy.max_challenges_per_account;
        let unstored = self.outstanding.count(issued.account_handle(), now);
        if max > 0 && unstored >= max {
            return Err(IssueError::TooManyChallenges { max });
        }
        let limit = (max > 0).then_some(ChallengeLimit {
            max: max - unstored,
            now,
        });
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

    /// Issues a payment challenge for `transaction`, to be signed by
    /// `credential_id`: stored, or with [`Verifier::with_challenge_keys`]
    /// self-authenticating and not stored (§6.1.3). The accepted modalities
    /// and the liveness requirement follow the policy for the amount.
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
        let (accepted_modalities, require_liveness) =
            self.payment_requirements(&cred, &transaction)?;
        let now = self.clock.now();
        let challenge = PaymentChallenge {
            rp_id: self.rp_id.clone(),
            account_handle: cred.account_handle.clone(),
            credential_id: credential_id.clone(),
            // A self-authenticating challenge's bytes are filled by its seal.
            challenge: match self.challenge_keys {
                Some(_) => [0u8; CHALLENGE_LEN],
                None => self.fresh_challenge()?,
            },
            transaction,
            issued_at: now,
            expires_at: now.saturating_add(self.policy.challenge_ttl_secs.max(1)),
            accepted_modalities,
            require_liveness,
        };
        if let Some(keys) = &self.challenge_keys {
            return self.seal_payment_challenge(keys, &cred, challenge, now);
        }
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

    /// Steps 3–5 of a payment challenge (§6.1.3): the accepted modalities
    /// and whether liveness is required, or `PolicyUnsatisfiable`. Also what
    /// `P9` recomputes for a self-authenticating challenge.
    pub(super) fn payment_requirements(
        &self,
        cred: &CredentialRecord,
        transaction: &Transaction,
    ) -> Result<(Vec<Modality>, bool), IssueError> {
        let high_value = self.is_high_value(transaction);
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
        Ok((accepted_modalities, face_required))
    }

    pub(super) fn is_high_value(&self, tx: &Transaction) -> bool {
        self.policy
            .high_value_thresholds
            .get(&tx.currency)
            .is_some_and(|t| tx.amount_minor >= *t)
    }

    /// Deletes expired challenges from the store, and the spent-challenge
    /// entries of self-authenticating challenges that expired more than
    /// `max_clock_skew_secs` ago (§7.1). Returns how many challenge records
    /// and spent entries it deleted.
    pub fn purge_expired_challenges(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        self.outstanding.prune(now);
        let stored = self.store.purge_expired_challenges(now)?;
        let spent = self
            .store
            .purge_spent_challenges(now.saturating_sub(self.policy.max_clock_skew_secs))?;
        Ok(stored.saturating_add(spent))
    }
}
