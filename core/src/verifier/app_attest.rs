//! Apple App Attest registration (docs/PROTOCOL.md §13.8, K1–K13 with I1–I10)
//! and the App Attest trust read at P7.

use super::checks::{check_account, check_expiry, commit_rejection, open_cose};
use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Verifies an Apple App Attest registration (docs/PROTOCOL.md §13.8,
    /// steps K1–K13 with I1–I10): an [`AppleKeyRegistration`] signed by the
    /// Secure Enclave key it carries (COSE fixed or DER signature), whose
    /// App Attest attestation binds (§13.3) that key, the issued challenge,
    /// the rp id and the credential id; then registers the credential as
    /// [`CredentialKind::AppleAppAttest`] with its App Attest key.
    pub fn verify_apple_registration(
        &self,
        statement: &[u8],
    ) -> Result<RegisteredCredential, Rejection> {
        self.apple_registration(statement, &mut None)
    }

    /// [`Self::verify_apple_registration`], telling `named` the credential id the payload names
    /// once K3 decoded it (for [`Self::verify_any_registration`]).
    pub(super) fn apple_registration(
        &self,
        statement: &[u8],
        named: &mut Option<CredentialId>,
    ) -> Result<RegisteredCredential, Rejection> {
        let now = self.clock.now();
        // K1, K2
        let sign1 = open_cose(
            cose::parse_sign1_any_form(statement, false),
            Step::K1Statement,
            Step::K2Header,
        )?;
        // K3
        let reg = AppleKeyRegistration::from_cbor(&sign1.payload).at(Step::K3Payload)?;
        *named = Some(reg.credential_id.clone());
        // K4
        let Some(trust) = self.apple() else {
            return reject(Step::K4Platform, Reason::PlatformNotTrusted);
        };
        // K5: proof of possession of the Secure Enclave key.
        if !crypto::is_valid_p256_point(&reg.public_key) {
            return reject(Step::K5Signature, Reason::AttestationKeyType);
        }
        if !crypto::verify_es256(
            &reg.public_key,
            &sign1.to_be_signed,
            &sign1.signature,
            crypto::es256_signature_format(&sign1.signature),
        ) {
            return reject(Step::K5Signature, Reason::BadSignature);
        }
        // K6
        self.check_rp_id(Step::K6RpId, &reg.rp_id_hash)?;
        // K7
        let issued = self.registration_entry(Step::K7Challenge, &reg.challenge)?;
        // K8
        check_expiry(Step::K8ChallengeExpiry, issued.expires_at, now)?;
        // K9
        check_account(Step::K9Account, &reg.account_handle, &issued.account_handle)?;
        // K10
        if !reg
            .modalities
            .iter()
            .all(|m| issued.accepted_modalities.contains(m))
        {
            return reject(Step::K10Modality, Reason::ModalityNotAccepted);
        }
        // K11: nothing attests where the Secure Enclave key lives, so it is
        // recorded at TEE level and cannot meet a StrongBox requirement.
        if issued.required_assurance > SecurityLevel::Tee
            || self.policy.min_security_level > SecurityLevel::Tee
        {
            return reject(Step::K11SecurityLevel, Reason::InsufficientSecurityLevel);
        }
        // I1–I10 over the binding of the issued challenge, this rp, the key
        // and the credential id (§13.3).
        let client_data_hash = apple::binding_client_data_hash(
            &issued.challenge,
            &self.rp_id,
            &reg.public_key,
            &reg.credential_id,
        )
        .at(Step::K3Payload)?;
        let attested = apple::verify_attestation(
            &reg.attestation_object,
            &client_data_hash,
            Some(&reg.app_attest_key_id),
            &trust,
            now,
        )?;
        // K12
        self.check_new_credential(Step::K12CredentialId, &reg.credential_id, &issued)?;
        // K13
        let record = CredentialRecord {
            credential_id: reg.credential_id.clone(),
            rp_id: self.rp_id.clone(),
            account_handle: reg.account_handle.clone(),
            public_key: reg.public_key.clone(),
            modalities: reg.modalities.clone(),
            enrollment_epoch: reg.enrollment_epoch,
            security_level: SecurityLevel::Tee,
            kind: CredentialKind::AppleAppAttest,
            device_model: APPLE_APP_ATTEST_MODEL.to_owned(),
            counter: reg.initial_counter,
            status: CredentialStatus::Active,
            registered_at: now,
            app_attest: Some(AppAttestKey {
                key_id: attested.key_id,
                public_key: attested.public_key,
                app_id: attested.app_id,
                environment: attested.environment,
                counter: attested.counter,
                receipt: attested.receipt,
            }),
        };
        let decision = self.decision(
            DecisionKind::AppleRegistration,
            &reg.credential_id,
            statement,
            now,
        );
        self.store
            .commit_registration(&reg.challenge, &record, &decision)
            .map_err(|e| commit_rejection(Step::K13Commit, e))?;
        Ok(RegisteredCredential { record })
    }

    /// Whether an Apple credential's App Attest key is still trusted: Apple
    /// trust is configured, its app id still allowed, its environment the
    /// configured one (P7).
    pub(super) fn apple_key_trusted(&self, key: Option<&AppAttestKey>) -> bool {
        let apple = self.apple.read().unwrap_or_else(PoisonError::into_inner);
        match (apple.as_ref(), key) {
            (Some(t), Some(k)) => t.environment == k.environment && t.app_ids.contains(&k.app_id),
            _ => false,
        }
    }
}
