//! Platform-keystore registration (docs/PROTOCOL.md §12.5, A1–A17).

use super::checks::{check_account, check_expiry, commit_rejection, open_cose};
use super::*;

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// Verifies a platform-keystore registration (docs/PROTOCOL.md §12.5,
    /// steps A1–A17): an Android Keystore attestation chain in `x5chain`, a
    /// [`PlatformKeyRegistration`] payload signed by the attested key (COSE
    /// fixed or DER signature), the Android registration policy; then
    /// registers the credential as [`CredentialKind::PlatformKeystore`].
    pub fn verify_platform_registration(
        &self,
        statement: &[u8],
    ) -> Result<RegisteredCredential, Rejection> {
        self.platform_registration(statement, &mut None)
    }

    /// [`Self::verify_platform_registration`], telling `named` the credential id the payload names
    /// once A3 decoded it (for [`Self::verify_any_registration`]).
    pub(super) fn platform_registration(
        &self,
        statement: &[u8],
        named: &mut Option<CredentialId>,
    ) -> Result<RegisteredCredential, Rejection> {
        let now = self.clock.now();
        // A1, A2
        let sign1 = open_cose(
            cose::parse_sign1_any_form(statement, true),
            Step::A1Statement,
            Step::A2Header,
        )?;
        // A3
        let reg = PlatformKeyRegistration::from_cbor(&sign1.payload).at(Step::A3Payload)?;
        *named = Some(reg.credential_id.clone());
        // A4
        let android = match (reg.platform, self.android()) {
            (Platform::Android, Some(a)) => a,
            (Platform::Android, None) => {
                return reject(Step::A4Platform, Reason::PlatformNotTrusted)
            }
        };
        // A5, A6
        let chain = android::verify_attestation_chain(
            &sign1.x5chain,
            &android.anchors,
            &android.status_list,
            now,
        )
        .map_err(|e| {
            let step = match e {
                android::AndroidChainError::Revoked { .. } => Step::A6Revocation,
                _ => Step::A5AttestationChain,
            };
            Rejection::new(step, e)
        })?;
        // A7
        let leaf = sign1.x5chain.first().map(Vec::as_slice).unwrap_or_default();
        let description = android::key_description_of(leaf).at(Step::A7KeyDescription)?;
        // A8
        let Some(key) = crypto::p256_point_from_spki(&chain.leaf_spki_der) else {
            return reject(Step::A8AttestedKey, Reason::AttestationKeyType);
        };
        // A9
        if !crypto::verify_es256(
            key,
            &sign1.to_be_signed,
            &sign1.signature,
            crypto::es256_signature_format(&sign1.signature),
        ) {
            return reject(Step::A9Signature, Reason::BadSignature);
        }
        // A10
        self.check_rp_id(Step::A10RpId, &reg.rp_id_hash)?;
        // A11
        let issued = self.registration_entry(Step::A11Challenge, &reg.challenge)?;
        // A12
        check_expiry(Step::A12ChallengeExpiry, issued.expires_at, now)?;
        // A13
        check_account(
            Step::A13Account,
            &reg.account_handle,
            &issued.account_handle,
        )?;
        // A14
        if !reg
            .modalities
            .iter()
            .all(|m| issued.accepted_modalities.contains(m))
        {
            return reject(Step::A14Modality, Reason::ModalityNotAccepted);
        }
        // A15: every check, every failure.
        let mut policy = android.policy.clone();
        policy.require_strongbox |= issued.required_assurance >= SecurityLevel::StrongBox
            || self.policy.min_security_level >= SecurityLevel::StrongBox;
        let mut failures = android::check_policy(&description, &policy, Some(&reg.challenge));
        if policy.package_name.is_none() || policy.signing_cert_digests.is_empty() {
            failures.push(android::AndroidPolicyFailure::ApplicationNotConfigured);
        }
        if !failures.is_empty() {
            return reject(Step::A15AndroidPolicy, Reason::AndroidPolicy(failures));
        }
        // A16
        self.check_new_credential(Step::A16CredentialId, &reg.credential_id, &issued)?;
        // A17
        let level = description
            .attestation_security_level
            .min(description.key_mint_security_level);
        let record = CredentialRecord {
            credential_id: reg.credential_id.clone(),
            rp_id: self.rp_id.clone(),
            account_handle: reg.account_handle.clone(),
            public_key: key.to_vec(),
            modalities: reg.modalities.clone(),
            enrollment_epoch: reg.enrollment_epoch,
            security_level: if level >= android::AndroidSecurityLevel::StrongBox {
                SecurityLevel::StrongBox
            } else {
                SecurityLevel::Tee
            },
            kind: CredentialKind::PlatformKeystore,
            device_model: ANDROID_KEYSTORE_MODEL.to_owned(),
            counter: reg.initial_counter,
            status: CredentialStatus::Active,
            registered_at: now,
            app_attest: None,
        };
        let decision = self.decision(
            DecisionKind::PlatformRegistration,
            &reg.credential_id,
            statement,
            now,
        );
        self.store
            .commit_registration(&reg.challenge, &record, &decision)
            .map_err(|e| commit_rejection(Step::A17Commit, e))?;
        Ok(RegisteredCredential { record })
    }
}
