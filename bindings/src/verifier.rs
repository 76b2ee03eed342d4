//! The relying party's verifier for JVM and Python back ends.

use crate::{
    errors::VerificationError,
    types::{
        ApprovedPayment, DeviceModelConfig, Modality, RegisteredCredential, SecurityLevel,
        Transaction,
    },
};
use biopay_core::{
    CredentialId, DeviceModel, MemoryStore, Message, ModelStatus, Policy, SystemClock,
    SystemRandom, TrustAnchor, TrustConfig, Verifier,
};

/// Issues challenges and verifies statements, with the default policy and
/// an in-memory store (a server keeps state durably with `biopay-server`).
/// Rejections arrive as `VerificationError.Rejected` naming the step of
/// docs/PROTOCOL.md §6, e.g. `P12 transaction-hash`.
#[derive(uniffi::Object)]
pub struct PaymentVerifier {
    verifier: Verifier<MemoryStore, SystemClock, SystemRandom>,
}

#[uniffi::export]
impl PaymentVerifier {
    /// A verifier for `rp_id` trusting `models`.
    #[uniffi::constructor]
    pub fn new(
        rp_id: String,
        models: Vec<DeviceModelConfig>,
    ) -> Result<std::sync::Arc<Self>, VerificationError> {
        let mut trust = TrustConfig::new();
        for m in models {
            trust = trust.with_model(DeviceModel {
                trust_anchors: m
                    .trust_anchor_spkis
                    .into_iter()
                    .enumerate()
                    .map(|(i, spki_der)| TrustAnchor {
                        name: format!("{} root {i}", m.model_id),
                        spki_der,
                    })
                    .collect(),
                id: m.model_id,
                modalities: m.modalities.into_iter().map(Into::into).collect(),
                security_level: m.security_level.into(),
                status: ModelStatus::Active,
            });
        }
        let verifier = Verifier::new(
            &rp_id,
            trust,
            Policy::default(),
            MemoryStore::new(),
            SystemClock,
            SystemRandom::new(),
        )?;
        Ok(std::sync::Arc::new(Self { verifier }))
    }

    /// Issues a registration challenge; returns its encoding for the app.
    pub fn registration_challenge(
        &self,
        account_handle: Vec<u8>,
        modalities: Vec<Modality>,
        required: SecurityLevel,
    ) -> Result<Vec<u8>, VerificationError> {
        let m: Vec<biopay_core::Modality> = modalities.into_iter().map(Into::into).collect();
        Ok(self
            .verifier
            .registration_challenge(&account_handle, &m, required.into())?
            .to_cbor())
    }

    /// Verifies a KeyAttestation and registers the credential.
    pub fn verify_registration(
        &self,
        statement: Vec<u8>,
    ) -> Result<RegisteredCredential, VerificationError> {
        Ok(self.verifier.verify_registration(&statement)?.record.into())
    }

    /// Issues a payment challenge bound to `transaction`; returns its encoding for the app.
    pub fn payment_challenge(
        &self,
        credential_id: Vec<u8>,
        transaction: Transaction,
    ) -> Result<Vec<u8>, VerificationError> {
        let id =
            CredentialId::new(credential_id).map_err(|e| VerificationError::InvalidRequest {
                reason: e.to_string(),
            })?;
        Ok(self
            .verifier
            .payment_challenge(&id, transaction.try_into()?)?
            .to_cbor())
    }

    /// Verifies a PaymentAssertion and records the approval.
    pub fn verify_payment(&self, statement: Vec<u8>) -> Result<ApprovedPayment, VerificationError> {
        Ok(self.verifier.verify_payment(&statement)?.into())
    }

    /// Verifies a Deregistration; returns the credential id.
    pub fn verify_deregistration(&self, statement: Vec<u8>) -> Result<Vec<u8>, VerificationError> {
        Ok(self
            .verifier
            .verify_deregistration(&statement)?
            .as_bytes()
            .to_vec())
    }

    /// Revokes a device model: nothing from it is accepted any more.
    pub fn revoke_model(&self, model_id: String) -> bool {
        self.verifier
            .set_model_status(&model_id, ModelStatus::Revoked)
    }
}

impl From<biopay_core::DecodeError> for VerificationError {
    fn from(e: biopay_core::DecodeError) -> Self {
        Self::InvalidRequest {
            reason: e.to_string(),
        }
    }
}
