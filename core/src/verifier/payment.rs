//! Payment assertion (docs/PROTOCOL.md §6.4, P1–P20, with J1–J4 of §13.9).

use super::checks::{check_expiry, commit_rejection};
use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Verifies a payment assertion (docs/PROTOCOL.md §6.4, steps P1–P20) and
    /// records the approval.
    pub fn verify_payment(&self, statement: &[u8]) -> Result<ApprovedPayment, Rejection> {
        self.verify_payment_with_app_attest(statement, None)
    }

    /// Verifies a payment assertion (§6.4) together with an optional Apple
    /// App Attest assertion over it (docs/PROTOCOL.md §13.9: clientDataHash
    /// = SHA-256 of `statement`, J1–J4 between P19 and P20, its counter
    /// committed with P20). An Apple credential's payment above
    /// [`Policy::apple_assertion_above`] without one is refused at P17.
    pub fn verify_payment_with_app_attest(
        &self,
        statement: &[u8],
        app_attest_assertion: Option<&[u8]>,
    ) -> Result<ApprovedPayment, Rejection> {
        // P1–P3
        let opened = self.open_payment(statement)?;
        self.verify_opened_payment(opened, app_attest_assertion)
    }

    /// Steps P4–P20 (with J1–J4, as [`Self::verify_payment_with_app_attest`])
    /// of a payment assertion that [`Self::open_payment`] opened; a caller
    /// that acts on the credential it names before deciding (a lockout
    /// check) opens it first, so the statement is decoded once.
    pub fn verify_opened_payment(
        &self,
        opened: Opened<PaymentAssertion>,
        app_attest_assertion: Option<&[u8]>,
    ) -> Result<ApprovedPayment, Rejection> {
        self.verify_opened_payment_with(opened, None, app_attest_assertion, None)
    }

    /// Verifies a payment assertion (§6.4) for `transaction`, the one the
    /// relying party asked the challenge for, with an optional App Attest
    /// assertion (§13.9). This is how a self-authenticating challenge
    /// ([`Verifier::with_challenge_keys`], §6.1.3) is verified: `P9` checks
    /// its MAC over this rp id, the statement's credential, the record's
    /// account and `transaction`. For a stored challenge (one stored before
    /// the keys were configured, or any without keys), `transaction` must be
    /// the stored one (`P9 ChallengeNotAuthentic` otherwise).
    pub fn verify_payment_for(
        &self,
        statement: &[u8],
        transaction: &Transaction,
        app_attest_assertion: Option<&[u8]>,
    ) -> Result<ApprovedPayment, Rejection> {
        let opened = self.open_payment(statement)?;
        self.verify_opened_payment_with(opened, Some(transaction), app_attest_assertion, None)
    }

    /// [`Self::verify_payment_for`] (or, without `transaction`,
    /// [`Self::verify_payment_with_app_attest`]) with the `P4` read done by
    /// the caller: see [`Self::verify_opened_payment_with`].
    pub fn verify_payment_with_record(
        &self,
        statement: &[u8],
        transaction: Option<&Transaction>,
        app_attest_assertion: Option<&[u8]>,
        record: CredentialRecord,
    ) -> Result<ApprovedPayment, Rejection> {
        let opened = self.open_payment(statement)?;
        self.verify_opened_payment_with(opened, transaction, app_attest_assertion, Some(record))
    }

    /// Steps P4–P20 of a payment assertion that [`Self::open_payment`]
    /// opened, for `transaction` when the relying party gives the one it
    /// asked the challenge for ([`Self::verify_payment_for`]), with the `P4`
    /// read done by the caller when `record` is given: what this verifier's
    /// store held for the statement's credential id, read for this call (a
    /// server reads it together with its rate-limit counts: one read per
    /// payment). It is used only when its id is the statement's; otherwise
    /// `P4` reads. A record changed since is caught where it matters: the
    /// commit (`P20`) checks status, counter and device model again (§7.3).
    pub fn verify_opened_payment_with(
        &self,
        opened: Opened<PaymentAssertion>,
        transaction: Option<&Transaction>,
        app_attest_assertion: Option<&[u8]>,
        record: Option<CredentialRecord>,
    ) -> Result<ApprovedPayment, Rejection> {
        let now = self.clock.now();
        let Opened {
            statement,
            sign1,
            message: a,
            ..
        } = opened;
        let statement = statement.as_slice();
        // P4, P5
        let cred = self.check_signer_with(
            &sign1,
            &a.credential_id,
            [Step::P2Header, Step::P4Credential, Step::P5Signature],
            record,
        )?;
        // P6
        if cred.status != CredentialStatus::Active {
            return reject(
                Step::P6CredentialStatus,
                Reason::CredentialNotActive(cred.status),
            );
        }
        // P7
        self.check_still_trusted(&cred)?;
        // P8
        self.check_rp_id(Step::P8RpId, &a.rp_id_hash)?;
        // P9: a self-authenticating challenge's MAC (nothing read), or the
        // stored challenge.
        let stateless = match (&self.challenge_keys, transaction) {
            (Some(keys), Some(tx)) => match self.open_payment_challenge(keys, &a, &cred, tx) {
                Ok(opened) => Some(opened),
                // A challenge stored before the keys were configured (a
                // switch without downtime) is verified as stored; only
                // this rejecting path reads.
                Err(r)
                    if r.reason == Reason::ChallengeNotAuthentic
                        && self
                            .store
                            .challenge(&a.challenge)
                            .at(Step::P9Challenge)?
                            .is_some() =>
                {
                    None
                }
                Err(r) => return Err(r),
            },
            _ => None,
        };
        let spends = stateless.is_some();
        let (issued, counter_at_issue) = match stateless {
            Some(opened) => opened,
            None => self.stored_payment_challenge(&a.challenge)?,
        };
        // A stored challenge verified for the caller's transaction: it must
        // have been issued for it, as a self-authenticating one must.
        if let Some(tx) = transaction.filter(|_| !spends) {
            if tx != &issued.transaction {
                return reject(Step::P9Challenge, Reason::ChallengeNotAuthentic);
            }
        }
        // P10
        check_expiry(Step::P10ChallengeExpiry, issued.expires_at, now)?;
        // P11
        if issued.credential_id != a.credential_id {
            return reject(Step::P11ChallengeBinding, Reason::CredentialMismatch);
        }
        if !crypto::ct_eq(&issued.account_handle, &cred.account_handle) {
            return reject(Step::P11ChallengeBinding, Reason::AccountMismatch);
        }
        // P12
        let tx_hash = issued.transaction.transaction_hash();
        if !crypto::ct_eq(&tx_hash, &a.transaction_hash) {
            return reject(Step::P12TransactionHash, Reason::TransactionMismatch);
        }

        // P13
        let display_hash =
            crypto::sha256(render_transaction(&self.rp_id, &issued.transaction).as_bytes());
        if !crypto::ct_eq(&display_hash, &a.display_hash) {
            return reject(Step::P13DisplayHash, Reason::DisplayMismatch);
        }
        // P14
        if !a.user_confirmed {
            return reject(Step::P14UserConfirmed, Reason::NotConfirmed);
        }
        // P15: a correctly signed statement from a changed enrollment blocks the credential.
        if !crypto::ct_eq(&a.enrollment_epoch, &cred.enrollment_epoch) {
            return self.flag_and_reject(
                Step::P15EnrollmentEpoch,
                CredentialStatus::EnrollmentChanged,
                Reason::EnrollmentChanged,
                &cred.credential_id,
                statement,
                now,
            );
        }
        // P16
        if !cred.modalities.contains(&a.modality)
            || !issued.accepted_modalities.contains(&a.modality)
        {
            return reject(Step::P16Modality, Reason::ModalityNotAccepted);
        }
        if issued.require_liveness && a.liveness != Liveness::Passed {
            return reject(Step::P16Modality, Reason::LivenessRequired);
        }
        // P17
        self.check_payment_policy(&a, &cred, &issued, app_attest_assertion.is_some())?;
        // P18
        self.check_tee_clock(Step::P18TeeClock, a.tee_time, now)?;
        // P19: the counter must exceed the stored one. A genuine device signs
        // this challenge after it was issued, so its counter exceeds the stored
        // counter at issue time; a correctly signed statement at or below that
        // comes from a clone or a rolled-back device. Above it, a later
        // statement from the same device was simply accepted first.
        if a.counter <= cred.counter {
            // A self-authenticating challenge already spent: a replay of an
            // accepted statement (its counter is at most the stored one). Read
            // only on this rejecting path (§6.4, P9).
            if spends
                && self
                    .store
                    .challenge_spent(&a.challenge)
                    .at(Step::P9Challenge)?
            {
                return reject(Step::P9Challenge, Reason::ChallengeAlreadyUsed);
            }
            if a.counter > counter_at_issue {
                return reject(
                    Step::P19Counter,
                    Reason::CounterSuperseded {
                        stored: cred.counter,
                        received: a.counter,
                    },
                );
            }
            return self.flag_and_reject(
                Step::P19Counter,
                CredentialStatus::SuspectedClone,
                Reason::CounterNotIncreased {
                    stored: cred.counter,
                    received: a.counter,
                },
                &cred.credential_id,
                statement,
                now,
            );
        }
        // J1–J4: the App Attest assertion, when sent, over SHA-256 of the
        // statement bytes, with the credential's App Attest key (§13.9).
        let app_attest_counter = match app_attest_assertion {
            None => None,
            Some(object) => {
                let Some(key) = cred.app_attest.as_ref() else {
                    return reject(
                        Step::J1AssertionObject,
                        apple::AppAttestError::Malformed {
                            field: "assertion",
                            reason: "the credential has no App Attest key",
                        },
                    );
                };
                let verified = apple::verify_assertion(
                    object,
                    &crypto::sha256(statement),
                    &key.public_key,
                    &key.app_id,
                    key.counter,
                )?;
                Some(verified.counter)
            }
        };
        // P20: the commit checks again, where no other process can change
        // them meanwhile, what P6, P7, P19 and J4 read before (§7.3).
        let decision = self.decision(DecisionKind::Payment, &cred.credential_id, statement, now);
        let committed = if spends {
            self.store.commit_payment_spending(
                &SpentChallenge {
                    challenge: a.challenge,
                    expires_at: issued.expires_at,
                },
                &cred.credential_id,
                a.counter,
                app_attest_counter,
                &decision,
            )
        } else {
            self.store.commit_payment(
                &a.challenge,
                &cred.credential_id,
                a.counter,
                app_attest_counter,
                &decision,
            )
        };
        committed.map_err(|e| match e {
            CommitError::AppAttestCounterSuperseded { stored } => Rejection::new(
                Step::J4Counter,
                Reason::CounterSuperseded {
                    stored: u64::from(stored),
                    received: app_attest_counter.map_or(0, u64::from),
                },
            ),
            // P19 passed, so the counter exceeds `counter_at_issue`: a
            // later statement was accepted since P4, as P19 would say.
            CommitError::CounterSuperseded { stored } => Rejection::new(
                Step::P19Counter,
                Reason::CounterSuperseded {
                    stored,
                    received: a.counter,
                },
            ),
            e => commit_rejection(Step::P20Commit, e),
        })?;
        if spends {
            self.outstanding.release(&cred.account_handle, &a.challenge);
        }
        Ok(ApprovedPayment {
            credential_id: cred.credential_id,
            account_handle: cred.account_handle,
            transaction: issued.transaction,
            modality: a.modality,
            liveness: a.liveness,
            counter: a.counter,
            template_id: a.template_id,
            statement_hash: decision.statement_hash,
        })
    }
}
