//! The payment procedure's own checks (docs/PROTOCOL.md §6.4), called from
//! `payment.rs`: the stored challenge (P9), the credential and its device
//! model still trusted (P6–P7), and the policy (P16–P17).

use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// P9 for a stored challenge: it is in the store, unconsumed, a payment
    /// challenge of this rp. Returns it and the counter at issue.
    pub(super) fn stored_payment_challenge(
        &self,
        challenge: &Challenge,
    ) -> Result<(PaymentChallenge, u64), Rejection> {
        let (issued, counter_at_issue) = match self.challenge_entry(Step::P9Challenge, challenge)? {
            ChallengeEntry {
                issued:
                    IssuedChallenge::Payment {
                        challenge,
                        counter_at_issue,
                    },
                ..
            } => (challenge, counter_at_issue),
            _ => return reject(Step::P9Challenge, Reason::WrongChallengeKind),
        };
        if issued.rp_id != self.rp_id {
            return reject(Step::P9Challenge, Reason::WrongRp);
        }
        Ok((issued, counter_at_issue))
    }

    /// P7: a TEE credential's device model, or for a platform-keystore or
    /// Apple credential its platform, is still trusted.
    pub(super) fn check_still_trusted(&self, cred: &CredentialRecord) -> Result<(), Rejection> {
        if cred.kind == CredentialKind::AppleAppAttest {
            if !self.apple_key_trusted(cred.app_attest.as_ref()) {
                return reject(Step::P7DeviceModel, Reason::PlatformNotTrusted);
            }
        } else if cred.kind == CredentialKind::PlatformKeystore {
            let trusted = self
                .android
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some();
            if !trusted {
                return reject(Step::P7DeviceModel, Reason::PlatformNotTrusted);
            }
        } else {
            match self.model_status(&cred.device_model) {
                Some(ModelStatus::Active) => {}
                Some(s) => return reject(Step::P7DeviceModel, Reason::DeviceModelNotActive(s)),
                None => return reject(Step::P7DeviceModel, Reason::UnknownDeviceModel),
            }
        }
        Ok(())
    }

    /// P17: the policy for the amount, the credential's kind, the App Attest
    /// assertion and the failed attempts.
    pub(super) fn check_payment_policy(
        &self,
        a: &PaymentAssertion,
        cred: &CredentialRecord,
        issued: &PaymentChallenge,
        has_app_attest_assertion: bool,
    ) -> Result<(), Rejection> {
        let tx = &issued.transaction;
        let cap = match cred.kind {
            CredentialKind::PlatformKeystore => Some(&self.policy.platform_keystore_max_amount),
            CredentialKind::AppleAppAttest => Some(&self.policy.apple_max_amount),
            _ => None,
        };
        if let Some(cap) = cap {
            let max = cap.get(&tx.currency).copied();
            if max.is_none_or(|m| tx.amount_minor > m) {
                return reject(
                    Step::P17Policy,
                    Reason::PlatformKeystoreLimit {
                        currency: tx.currency.clone(),
                        max,
                        amount: tx.amount_minor,
                    },
                );
            }
        }
        if cred.kind == CredentialKind::AppleAppAttest && !has_app_attest_assertion {
            let above = self.policy.apple_assertion_above.get(&tx.currency).copied();
            if above.is_none_or(|a| tx.amount_minor > a) {
                return reject(
                    Step::P17Policy,
                    Reason::AppAttestAssertionRequired {
                        currency: tx.currency.clone(),
                        above,
                        amount: tx.amount_minor,
                    },
                );
            }
        }
        if self.is_high_value(&issued.transaction) {
            // The app asserts modality and liveness for platform-keystore
            // credentials: only a TEE's liveness claim counts.
            let face = a.modality == Modality::Face
                && a.liveness == Liveness::Passed
                && cred.kind == CredentialKind::TeeAttested;
            let strongbox = cred.security_level >= SecurityLevel::StrongBox;
            let req = self.policy.high_value_requirement;
            let ok = match req {
                HighValueRequirement::FaceWithLiveness => face,
                HighValueRequirement::StrongBox => strongbox,
                HighValueRequirement::FaceWithLivenessOrStrongBox => face || strongbox,
            };
            if !ok {
                return reject(Step::P17Policy, Reason::PolicyRequires(req));
            }
        }
        if a.failed_attempts > self.policy.max_failed_attempts {
            return reject(
                Step::P17Policy,
                Reason::TooManyFailedAttempts(a.failed_attempts),
            );
        }
        Ok(())
    }
}
