//! Key attestation of a TEE credential (docs/PROTOCOL.md §6.3, R1–R16).

use super::checks::{check_account, check_expiry, commit_rejection, open_cose};
use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Verifies a key attestation (docs/PROTOCOL.md §6.3, steps R1–R16) and
    /// registers the credential.
    pub fn verify_registration(&self, statement: &[u8]) -> Result<RegisteredCredential, Rejection> {
        self.key_attestation(statement, &mut None)
    }

    /// [`Self::verify_registration`], telling `named` the credential id the payload names
    /// once R3 decoded it (for [`Self::verify_any_registration`]).
    pub(super) fn key_attestation(
        &self,
        statement: &[u8],
        named: &mut Option<CredentialId>,
    ) -> Result<RegisteredCredential, Rejection> {
        let now = self.clock.now();
        // R1, R2
        let sign1 = open_cose(
            cose::parse_sign1_any_form(statement, true),
            Step::R1Statement,
            Step::R2Header,
        )?;
        let att = KeyAttestation::from_cbor(&sign1.payload);
        *named = att.as_ref().ok().map(|a| a.credential_id.clone());
        // R2: a TEE signs in COSE's fixed form only (as `cose::parse_sign1`).
        if sign1.signature.len() != cose::ES256_SIG_LEN {
            return reject(Step::R2Header, cose::CoseError::SignatureLength);
        }
        // R3
        let att = att.at(Step::R3Payload)?;
        // R4
        let model = {
            let trust = self.trust.read().unwrap_or_else(PoisonError::into_inner);
            trust.model(&att.device_model).cloned()
        };
        let Some(model) = model else {
            return reject(Step::R4DeviceModel, Reason::UnknownDeviceModel);
        };
        if model.status != ModelStatus::Active {
            return reject(
                Step::R4DeviceModel,
                Reason::DeviceModelNotActive(model.status),
            );
        }
        // R5
        let chain = x509::verify_chain(&sign1.x5chain, &model.trust_anchors, now)
            .at(Step::R5AttestationChain)?;
        if !chain.leaf_subject_ou.contains(&model.id) {
            return reject(Step::R5AttestationChain, Reason::LeafModelMismatch);
        }
        // R6
        let Some(attestation_key) = crypto::p256_point_from_spki(&chain.leaf_spki_der) else {
            return reject(Step::R6Signature, Reason::AttestationKeyType);
        };
        if !crypto::verify_es256(
            attestation_key,
            &sign1.to_be_signed,
            &sign1.signature,
            SignatureFormat::Fixed,
        ) {
            return reject(Step::R6Signature, Reason::BadSignature);
        }
        // R7
        self.check_rp_id(Step::R7RpId, &att.rp_id_hash)?;
        // R8
        let issued = self.registration_entry(Step::R8Challenge, &att.challenge)?;
        // R9
        check_expiry(Step::R9ChallengeExpiry, issued.expires_at, now)?;
        // R10
        check_account(
            Step::R10Account,
            &att.account_handle,
            &issued.account_handle,
        )?;
        // R11
        if !att
            .modalities
            .iter()
            .all(|m| issued.accepted_modalities.contains(m) && model.modalities.contains(m))
        {
            return reject(Step::R11Modality, Reason::ModalityNotAccepted);
        }
        // R12
        if att.security_level > model.security_level {
            return reject(Step::R12SecurityLevel, Reason::SecurityLevelOverclaimed);
        }
        if att.security_level < issued.required_assurance
            || att.security_level < self.policy.min_security_level
        {
            return reject(Step::R12SecurityLevel, Reason::InsufficientSecurityLevel);
        }
        // R13
        // A failed verification is never accepted; the policy may admit
        // self-signed or unlocked boot (e.g. for test fleets).
        if att.verified_boot == VerifiedBootState::Failed
            || (self.policy.require_verified_boot
                && att.verified_boot != VerifiedBootState::Verified)
        {
            return reject(Step::R13BootState, Reason::BootState(att.verified_boot));
        }
        // R14
        self.check_tee_clock(Step::R14TeeClock, att.tee_time, now)?;
        // R15
        self.check_new_credential(Step::R15CredentialId, &att.credential_id, &issued)?;
        // R16
        let record = CredentialRecord {
            credential_id: att.credential_id.clone(),
            rp_id: self.rp_id.clone(),
            account_handle: att.account_handle.clone(),
            public_key: att.credential_public_key.clone(),
            modalities: att.modalities.clone(),
            enrollment_epoch: att.enrollment_epoch,
            security_level: att.security_level,
            kind: CredentialKind::TeeAttested,
            device_model: att.device_model.clone(),
            counter: att.initial_counter,
            status: CredentialStatus::Active,
            registered_at: now,
            app_attest: None,
        };
        let decision = self.decision(
            DecisionKind::Registration,
            &att.credential_id,
            statement,
            now,
        );
        self.store
            .commit_registration(&att.challenge, &record, &decision)
            .map_err(|e| commit_rejection(Step::R16Commit, e))?;
        Ok(RegisteredCredential { record })
    }
}
