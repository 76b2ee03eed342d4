//! The relying party's verifier for JVM and Python back ends.

use crate::{
    errors::VerificationError,
    types::{
        AndroidTrustConfig, ApprovedPayment, DeviceModelConfig, Modality, RegisteredCredential,
        SecurityLevel, Transaction,
    },
};
use biopay_core::{
    AndroidPolicy, AndroidTrust, CredentialId, DeviceModel, MemoryStore, Message, ModelStatus,
    Policy, SystemClock, SystemRandom, TrustAnchor, TrustConfig, Verifier,
};

/// Issues challenges and verifies statements, with the default policy and
/// an in-memory store (a server keeps state durably with `biopay-server`).
/// Rejections arrive as `VerificationError.Rejected` naming the step of
/// docs/PROTOCOL.md §6, e.g. `P12 transaction-hash`.
#[derive(uniffi::Object)]
pub struct PaymentVerifier {
    pub(crate) verifier: Verifier<MemoryStore, SystemClock, SystemRandom>,
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

    /// Verifies several PaymentAssertions in one call, for a back end that
    /// verifies at volume: each statement is decided on its own, in order,
    /// exactly as [`Self::verify_payment`] would decide it (one's rejection
    /// does not affect the others), and the outcomes come back in the same
    /// order. One crossing of the FFI for the whole list instead of one per
    /// statement (docs/PERFORMANCE.md, "Bindings").
    pub fn verify_payments(&self, statements: Vec<Vec<u8>>) -> Vec<PaymentOutcome> {
        statements
            .iter()
            .map(|s| match self.verifier.verify_payment(s) {
                Ok(p) => PaymentOutcome {
                    approved: Some(p.into()),
                    rejection: None,
                },
                Err(r) => PaymentOutcome {
                    approved: None,
                    rejection: Some(StepRejection {
                        step_code: r.step.code().to_owned(),
                        step_name: r.step.name().to_owned(),
                        reason: r.reason.to_string(),
                    }),
                },
            })
            .collect()
    }

    /// Verifies a Deregistration; returns the credential id.
    pub fn verify_deregistration(&self, statement: Vec<u8>) -> Result<Vec<u8>, VerificationError> {
        Ok(self
            .verifier
            .verify_deregistration(&statement)?
            .as_bytes()
            .to_vec())
    }

    /// Accepts platform-keystore credentials (docs/PROTOCOL.md §12) attested
    /// under `config`, replacing any previous Android trust configuration.
    pub fn trust_android(&self, config: AndroidTrustConfig) -> Result<(), VerificationError> {
        let invalid = |reason: &str| VerificationError::InvalidRequest {
            reason: reason.to_owned(),
        };
        let signing_cert_digests = config
            .signing_cert_digests
            .into_iter()
            .map(|d| <[u8; 32]>::try_from(d).map_err(|_| invalid("signing digests are 32 bytes")))
            .collect::<Result<Vec<_>, _>>()?;
        let min_os_patch_level = u64::try_from(config.min_os_patch_level)
            .map_err(|_| invalid("min_os_patch_level must not be negative"))?;
        if config.package_name.is_empty() || signing_cert_digests.is_empty() {
            return Err(invalid("a package name and a signing digest are required"));
        }
        let mut anchors = if config.include_google_roots {
            biopay_core::android::google_roots()
        } else {
            Vec::new()
        };
        anchors.extend(
            config
                .root_spkis
                .into_iter()
                .enumerate()
                .map(|(i, spki_der)| TrustAnchor {
                    name: format!("configured Android root {i}"),
                    spki_der,
                }),
        );
        if anchors.is_empty() {
            return Err(invalid("no Android trust root"));
        }
        let policy = AndroidPolicy {
            package_name: Some(config.package_name),
            signing_cert_digests,
            min_os_patch_level,
            require_strongbox: config.require_strong_box,
        };
        self.verifier
            .set_android(Some(AndroidTrust::new(policy).with_anchors(anchors)));
        Ok(())
    }

    /// Verifies a PlatformKeyRegistration (docs/PROTOCOL.md §12.5, steps
    /// A1–A17) and registers the credential (`kind` `platform_keystore`).
    pub fn verify_platform_registration(
        &self,
        statement: Vec<u8>,
    ) -> Result<RegisteredCredential, VerificationError> {
        Ok(self
            .verifier
            .verify_platform_registration(&statement)?
            .record
            .into())
    }

    /// Installs Google's Android attestation status list (its JSON, as served
    /// at `https://android.googleapis.com/attestation/status`; fetch and
    /// refresh it yourself). Registrations whose chain holds a revoked,
    /// suspended or unknown-status certificate are then refused at A6.
    /// Fails when the JSON does not parse (the previous list stays) or when
    /// Android trust is not configured ([`Self::trust_android`] first).
    pub fn set_android_status_list(&self, json: Vec<u8>) -> Result<(), VerificationError> {
        let list = biopay_core::android::StatusList::from_json(&json).map_err(|e| {
            VerificationError::InvalidRequest {
                reason: format!("status list: {e}"),
            }
        })?;
        if self.verifier.set_android_status_list(list) {
            Ok(())
        } else {
            Err(VerificationError::InvalidRequest {
                reason: "Android trust is not configured".into(),
            })
        }
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

/// The outcome of one statement of [`PaymentVerifier::verify_payments`]:
/// exactly one of `approved` and `rejection` is set.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PaymentOutcome {
    /// The approved payment, when the statement was accepted.
    pub approved: Option<ApprovedPayment>,
    /// Why it was refused, naming the step of docs/PROTOCOL.md §6.
    pub rejection: Option<StepRejection>,
}

/// A rejection at a numbered step, as `VerificationError.Rejected` carries
/// it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StepRejection {
    /// The step code, e.g. `P9`.
    pub step_code: String,
    /// The step's stable name, e.g. `challenge`.
    pub step_name: String,
    /// Why.
    pub reason: String,
}
