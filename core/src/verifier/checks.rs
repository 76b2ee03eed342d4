//! The checks several procedures share, written once: opening a signed
//! statement and mapping COSE errors to the procedure's step, the challenge
//! lookup, expiry and binding, the rp id, the TEE clock, decisions, flags
//! and the mapping of a failed commit.

use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// The rp id hash in a statement is this verifier's (`R7`, `A10`, `K6`,
    /// `P8`, `D6`, `E6`).
    pub(super) fn check_rp_id(&self, step: Step, rp_id_hash: &[u8; 32]) -> Result<(), Rejection> {
        if !crypto::ct_eq(rp_id_hash, &self.rp_id_hash) {
            return reject(step, Reason::WrongRp);
        }
        Ok(())
    }

    /// The outstanding registration challenge of this rp a registration
    /// answers (`R8`, `A11`, `K7`).
    pub(super) fn registration_entry(
        &self,
        step: Step,
        challenge: &Challenge,
    ) -> Result<RegistrationChallenge, Rejection> {
        let issued = match self.challenge_entry(step, challenge)? {
            ChallengeEntry {
                issued: IssuedChallenge::Registration(c),
                ..
            } => c,
            _ => return reject(step, Reason::WrongChallengeKind),
        };
        if issued.rp_id != self.rp_id {
            return reject(step, Reason::WrongRp);
        }
        Ok(issued)
    }

    /// The new credential's id starts with the issued challenge's
    /// `credential_id_prefix` (its account's slot, §4.1.9), and no credential
    /// with this id is registered yet (`R15`, `A16`, `K12`).
    pub(super) fn check_new_credential(
        &self,
        step: Step,
        credential_id: &CredentialId,
        issued: &RegistrationChallenge,
    ) -> Result<(), Rejection> {
        if !credential_id
            .as_bytes()
            .starts_with(&issued.credential_id_prefix)
        {
            return reject(step, Reason::CredentialIdPrefixMismatch);
        }
        if self.store.credential(credential_id).at(step)?.is_some() {
            return reject(step, Reason::DuplicateCredential);
        }
        Ok(())
    }

    /// Marks a credential whose correctly signed statement is a security
    /// event (`P15`, `P19`) with `status`, then rejects at `step` for `reason`.
    pub(super) fn flag_and_reject<T>(
        &self,
        step: Step,
        status: CredentialStatus,
        reason: Reason,
        credential_id: &CredentialId,
        statement: &[u8],
        now: u64,
    ) -> Result<T, Rejection> {
        self.store
            .flag_credential(&Flag {
                credential_id: credential_id.clone(),
                status,
                step,
                reason: reason.to_string(),
                statement_hash: crypto::sha256(statement),
                at: now,
            })
            .map_err(|e| commit_rejection(step, e))?;
        reject(step, reason)
    }

    pub(super) fn check_tee_clock(
        &self,
        step: Step,
        tee_time: u64,
        now: u64,
    ) -> Result<(), Rejection> {
        if tee_time.abs_diff(now) > self.policy.max_clock_skew_secs {
            return reject(step, Reason::ClockSkew { tee_time, now });
        }
        Ok(())
    }

    pub(super) fn model_status(&self, model: &str) -> Option<ModelStatus> {
        self.trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .model(model)
            .map(|m| m.status)
    }

    pub(super) fn challenge_entry(
        &self,
        step: Step,
        challenge: &Challenge,
    ) -> Result<ChallengeEntry, Rejection> {
        match self.store.challenge(challenge).at(step)? {
            None => reject(step, Reason::UnknownChallenge),
            Some(e) if e.consumed => reject(step, Reason::ChallengeAlreadyUsed),
            Some(e) => Ok(e),
        }
    }

    pub(super) fn decision(
        &self,
        kind: DecisionKind,
        id: &CredentialId,
        statement: &[u8],
        now: u64,
    ) -> Decision {
        Decision {
            kind,
            credential_id: id.clone(),
            statement_hash: crypto::sha256(statement),
            at: now,
        }
    }

    /// Parses a credential-signed statement (steps 1–5 of §6.4–6.6): COSE,
    /// header, payload, credential lookup and signature.
    pub(super) fn open_signed<M: Message>(
        &self,
        statement: &[u8],
        steps: [Step; 5],
        credential_of: impl Fn(&M) -> &CredentialId,
    ) -> Result<(M, CredentialRecord), Rejection> {
        let [s_statement, s_header, s_payload, s_credential, s_signature] = steps;
        let (sign1, msg) = decode_signed(statement, [s_statement, s_header, s_payload])?;
        let cred = self.check_signer(
            &sign1,
            credential_of(&msg),
            [s_header, s_credential, s_signature],
        )?;
        Ok((msg, cred))
    }

    /// Steps 4 and 5 of a credential-signed statement decoded by
    /// [`decode_signed`]: the credential is registered with this rp, and the
    /// signature (in a form its kind may use, else step 2) verifies with its
    /// key.
    pub(super) fn check_signer(
        &self,
        sign1: &cose::Sign1,
        credential_id: &CredentialId,
        steps: [Step; 3],
    ) -> Result<CredentialRecord, Rejection> {
        self.check_signer_with(sign1, credential_id, steps, None)
    }

    /// [`Self::check_signer`], with the credential record the caller read
    /// from this verifier's store for this call: used at step 4 instead of a
    /// read when its id is the statement's.
    pub(super) fn check_signer_with(
        &self,
        sign1: &cose::Sign1,
        credential_id: &CredentialId,
        [s_header, s_credential, s_signature]: [Step; 3],
        read: Option<CredentialRecord>,
    ) -> Result<CredentialRecord, Rejection> {
        let cred = match read.filter(|r| r.credential_id == *credential_id) {
            Some(r) => Some(r),
            None => self.store.credential(credential_id).at(s_credential)?,
        };
        let Some(cred) = cred else {
            return reject(s_credential, Reason::UnknownCredential);
        };
        if cred.rp_id != self.rp_id {
            return reject(s_credential, Reason::UnknownCredential);
        }
        // A TEE signs in COSE's fixed form only; a platform keystore may
        // return DER (Android's `Signature`), admitted for its credentials only.
        let format = match cred.kind {
            CredentialKind::TeeAttested if sign1.signature.len() != cose::ES256_SIG_LEN => {
                return reject(s_header, cose::CoseError::SignatureLength);
            }
            CredentialKind::TeeAttested => SignatureFormat::Fixed,
            CredentialKind::PlatformKeystore | CredentialKind::AppleAppAttest => {
                crypto::es256_signature_format(&sign1.signature)
            }
        };
        if !crypto::verify_es256(
            &cred.public_key,
            &sign1.to_be_signed,
            &sign1.signature,
            format,
        ) {
            return reject(s_signature, Reason::BadSignature);
        }
        Ok(cred)
    }
}

/// Steps 1–3 of a credential-signed statement (§6.4–6.6): the COSE_Sign1
/// envelope (any signature form: the credential's kind decides at step 5),
/// its header, and the payload as an `M`. Reads no state.
pub(super) fn decode_signed<M: Message>(
    statement: &[u8],
    [s_statement, s_header, s_payload]: [Step; 3],
) -> Result<(cose::Sign1, M), Rejection> {
    let sign1 = open_cose(
        cose::parse_sign1_any_form(statement, false),
        s_statement,
        s_header,
    )?;
    let msg = M::from_cbor(&sign1.payload).at(s_payload)?;
    Ok((sign1, msg))
}

/// The rejection for a failed commit at `step` (docs/PROTOCOL.md §7.3). A
/// device model found not active by the commit is reported at the step that
/// checks the model (`R4`, `A4`, `P7`): the check failed there, only later.
pub(super) fn commit_rejection(step: Step, e: CommitError) -> Rejection {
    let reason = match e {
        CommitError::ChallengeUsed => Reason::ChallengeAlreadyUsed,
        CommitError::CredentialExists => Reason::DuplicateCredential,
        CommitError::UnknownCredential => Reason::UnknownCredential,
        CommitError::CounterConflict => Reason::ConcurrentUpdate,
        // Only `commit_payment` reports it, and `verify_payment` maps it to
        // `P19 CounterSuperseded` itself.
        CommitError::CounterSuperseded { .. } => Reason::ConcurrentUpdate,
        // Only `commit_payment` reports it, and `verify_payment` maps it to
        // `J4 CounterSuperseded` itself.
        CommitError::AppAttestCounterSuperseded { .. } => Reason::ConcurrentUpdate,
        CommitError::CredentialNotActive(s) => Reason::CredentialNotActive(s),
        CommitError::DeviceModelNotActive(s) => {
            let model_step = match step {
                Step::R16Commit => Step::R4DeviceModel,
                Step::A17Commit => Step::A4Platform,
                Step::K13Commit => Step::K4Platform,
                Step::P20Commit => Step::P7DeviceModel,
                other => other,
            };
            return Rejection::new(model_step, Reason::DeviceModelNotActive(s));
        }
        CommitError::Backend(e) => Reason::Store(e),
    };
    Rejection::new(step, reason)
}

/// Maps a COSE_Sign1 parse result to the procedure's steps: an undecodable
/// statement, not a COSE_Sign1 or without a payload fails at `s_statement`
/// (step 1), anything else in the envelope at `s_header` (step 2).
pub(super) fn open_cose(
    parsed: Result<cose::Sign1, cose::CoseError>,
    s_statement: Step,
    s_header: Step,
) -> Result<cose::Sign1, Rejection> {
    parsed.map_err(|e| {
        let step = if matches!(
            e,
            cose::CoseError::Cbor(_)
                | cose::CoseError::NotCoseSign1
                | cose::CoseError::MissingPayload
        ) {
            s_statement
        } else {
            s_header
        };
        Rejection::new(step, e)
    })
}

/// The challenge has not expired at `now` (`R9`, `A12`, `K8`, `P10`).
pub(super) fn check_expiry(step: Step, expires_at: u64, now: u64) -> Result<(), Rejection> {
    if now > expires_at {
        return reject(step, Reason::ChallengeExpired { expires_at, now });
    }
    Ok(())
}

/// The account a registration names is the one its challenge was issued
/// to (`R10`, `A13`, `K9`).
pub(super) fn check_account(step: Step, signed: &[u8], issued: &[u8]) -> Result<(), Rejection> {
    if !crypto::ct_eq(signed, issued) {
        return reject(step, Reason::AccountMismatch);
    }
    Ok(())
}

/// The signed counter exceeds the stored one (`D8`, `E9`).
pub(super) fn check_counter_increased(
    step: Step,
    stored: u64,
    received: u64,
) -> Result<(), Rejection> {
    if received <= stored {
        return reject(step, Reason::CounterNotIncreased { stored, received });
    }
    Ok(())
}
