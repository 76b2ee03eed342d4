//! Request and response bodies, with their OpenAPI schemas.

use super::*;
use crate::{b64::b64, config::modality_name};
use biopay_core::{
    store::{CredentialKind, CredentialRecord},
    SecurityLevel, Transaction,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Request: a registration challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationChallengeRequest {
    /// The account handle (base64url, 1..=64 bytes, opaque, never PII).
    pub account: String,
    /// Accepted modalities: `fingerprint`, `face`.
    pub modalities: Vec<String>,
    /// Weakest accepted key storage: `software`, `tee` (default), `strong_box`.
    #[serde(default)]
    pub required_assurance: Option<String>,
}

/// A challenge to send to the device.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeResponse {
    /// The encoded challenge message (deterministic CBOR, base64url).
    pub challenge: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// For a payment: the text the device's trusted UI will show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_text: Option<String>,
}

/// Request: a key attestation to verify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// The KeyAttestation COSE_Sign1 (base64url), or a PlatformKeyRegistration
    /// (an Android Keystore key; accepted when the trust file has `[android]`),
    /// or an AppleKeyRegistration (an iOS Secure Enclave key with App Attest;
    /// accepted when the trust file has `[apple]`).
    pub attestation: String,
}

/// A credential as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    /// Credential id (base64url).
    pub credential_id: String,
    /// Account handle (base64url).
    pub account: String,
    /// Device model.
    pub device_model: String,
    /// Bound modalities.
    pub modalities: Vec<String>,
    /// `software`, `tee`, `strong_box`.
    pub security_level: String,
    /// `tee_attested`, `platform_keystore` or `apple_app_attest`.
    pub kind: String,
    /// What the credential's registration proves and does not prove
    /// (PROTOCOL.md §7.2, §12.1, §13.1).
    pub assurance: String,
    /// Last accepted signature counter.
    pub counter: u64,
    /// `active`, `suspended`, `suspected_clone`, `enrollment_changed`, `deregistered`.
    pub status: String,
    /// Registration time, Unix seconds.
    pub registered_at: u64,
}

/// The honest assurance of each credential kind, as the spec states it.
pub(crate) fn assurance_text(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::TeeAttested => {
            "TEE-attested: the TEE matched the biometric, showed the transaction \
             and signed; model, counter and display are attested"
        }
        CredentialKind::PlatformKeystore => {
            "Android Keystore: the hardware attests the key and a fresh strong \
             biometric per signature; modality, display and counter are the app's claims"
        }
        CredentialKind::AppleAppAttest => {
            "Apple App Attest: a genuine instance of an allowed app on a genuine \
             Apple device made this key; that it needs a fresh biometric is \
             enforced by the app's own code, not attested by hardware"
        }
        _ => "unknown credential kind",
    }
}

pub(crate) fn level_name(l: SecurityLevel) -> &'static str {
    match l {
        SecurityLevel::Software => "software",
        SecurityLevel::Tee => "tee",
        SecurityLevel::StrongBox => "strong_box",
    }
}

impl From<&CredentialRecord> for CredentialView {
    fn from(c: &CredentialRecord) -> Self {
        Self {
            credential_id: b64(c.credential_id.as_bytes()),
            account: b64(&c.account_handle),
            device_model: c.device_model.clone(),
            modalities: c
                .modalities
                .iter()
                .map(|m| modality_name(*m).to_owned())
                .collect(),
            security_level: level_name(c.security_level).to_owned(),
            kind: c.kind.as_str().to_owned(),
            assurance: assurance_text(c.kind).to_owned(),
            counter: c.counter,
            status: c.status.as_str().to_owned(),
            registered_at: c.registered_at,
        }
    }
}

/// The transaction to approve.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionBody {
    /// Amount in minor units (8800 = 88.00 CNY), 1 ..= 2^63 − 1.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub amount_minor: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Payee id.
    pub payee_id: String,
    /// Payee display name.
    pub payee_name: String,
    /// Order id.
    pub order_id: String,
    /// Optional memo shown on the trusted UI.
    #[serde(default)]
    pub memo: Option<String>,
}

impl From<TransactionBody> for Transaction {
    fn from(t: TransactionBody) -> Self {
        Transaction {
            amount_minor: t.amount_minor,
            currency: t.currency,
            payee_id: t.payee_id,
            payee_name: t.payee_name,
            order_id: t.order_id,
            memo: t.memo,
        }
    }
}

impl From<&Transaction> for TransactionBody {
    fn from(t: &Transaction) -> Self {
        Self {
            amount_minor: t.amount_minor,
            currency: t.currency.clone(),
            payee_id: t.payee_id.clone(),
            payee_name: t.payee_name.clone(),
            order_id: t.order_id.clone(),
            memo: t.memo.clone(),
        }
    }
}

/// Request: a payment challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentChallengeRequest {
    /// The credential that must sign (base64url).
    pub credential_id: String,
    /// The transaction.
    pub transaction: TransactionBody,
}

/// Request: a payment assertion to verify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPaymentRequest {
    /// The PaymentAssertion COSE_Sign1 (base64url).
    pub assertion: String,
    /// An Apple App Attest assertion object (base64url) whose clientDataHash
    /// is SHA-256 of the `assertion` bytes: required for an
    /// `apple_app_attest` credential above the configured amount
    /// (PROTOCOL.md §13.9, P17 and J1–J4).
    #[serde(default)]
    pub app_attest_assertion: Option<String>,
    /// The transaction the challenge was requested for. Required when the
    /// server issues self-authenticating payment challenges (PROTOCOL.md
    /// §6.1.3): P9 checks the challenge's MAC over it. With a stored
    /// challenge, if given, it must be the stored one (P12).
    #[serde(default)]
    pub transaction: Option<TransactionBody>,
}

/// Request (`Content-Type: application/cbor`): a payment challenge, as one
/// deterministic CBOR map (RFC 8949 §4.2.1) with the JSON body's text keys:
/// `{"credential_id": bstr, "transaction": {"amount_minor": uint,
/// "currency": tstr, "payee_id": tstr, "payee_name": tstr, "order_id": tstr,
/// ? "memo": tstr}}`. Any other key, type or encoding is 400 `BAD_REQUEST`.
/// The answer is JSON.
#[derive(Debug, ToSchema)]
pub struct PaymentChallengeCbor {
    /// The credential that must sign, a CBOR byte string.
    #[schema(value_type = String, format = Binary)]
    pub credential_id: Vec<u8>,
    /// The transaction (a CBOR map; `amount_minor` an unsigned integer, the
    /// rest text strings).
    pub transaction: TransactionBody,
}

/// Request (`Content-Type: application/cbor`): several payment challenges,
/// as one deterministic CBOR map `{"items": [+ PaymentChallengeCbor]}`.
#[derive(Debug, ToSchema)]
pub struct PaymentChallengeBatchCbor {
    /// 1..=`max_batch_items` (default 64) challenge requests.
    pub items: Vec<PaymentChallengeCbor>,
}

/// Request (`Content-Type: application/cbor`): a payment assertion to
/// verify, as one deterministic CBOR map (RFC 8949 §4.2.1; shortest forms,
/// definite lengths, keys in bytewise order, nothing after it) with these
/// text keys: `{"assertion": bstr, ? "app_attest_assertion": bstr, ?
/// "transaction": Transaction}` (the transaction as in
/// [`PaymentChallengeCbor`]). Any other key, type or encoding is 400
/// `BAD_REQUEST`. The answer is JSON.
#[derive(Debug, ToSchema)]
pub struct VerifyPaymentCbor {
    /// The PaymentAssertion COSE_Sign1, a CBOR byte string.
    #[schema(value_type = String, format = Binary)]
    pub assertion: Vec<u8>,
    /// The Apple App Attest assertion object, a CBOR byte string (as
    /// `app_attest_assertion` of the JSON body).
    #[schema(value_type = Option<String>, format = Binary)]
    pub app_attest_assertion: Option<Vec<u8>>,
    /// The transaction the challenge was requested for (a CBOR map, as
    /// `transaction` of the JSON body): required by a server that issues
    /// self-authenticating payment challenges (PROTOCOL.md §6.1.3).
    pub transaction: Option<TransactionBody>,
}

/// Request: several payment challenges, one per item, issued independently.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentChallengeBatchRequest {
    /// 1..=`max_batch_items` (default 64) challenge requests.
    pub items: Vec<PaymentChallengeRequest>,
}

/// One item of a challenge batch: `status` is what
/// `/v1/payments/challenge` would have answered for it; `challenge` is
/// present when it is 200, `error` otherwise.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeBatchItem {
    /// The item's HTTP status.
    pub status: u16,
    /// The challenge (status 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<ChallengeResponse>,
    /// The error (any other status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The outcomes of a challenge batch, in the order of the request's items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeBatchResponse {
    /// One outcome per requested item.
    pub items: Vec<ChallengeBatchItem>,
}

/// Request: several payment assertions, each verified and committed on its
/// own (not all-or-nothing).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPaymentBatchRequest {
    /// 1..=`max_batch_items` (default 64) assertions.
    pub items: Vec<VerifyPaymentRequest>,
}

/// Request (`Content-Type: application/cbor`): several payment assertions,
/// as one deterministic CBOR map `{"items": [+ VerifyPaymentCbor]}`. Any
/// other key, type or encoding is 400 `BAD_REQUEST`. The answer is JSON.
#[derive(Debug, ToSchema)]
pub struct VerifyPaymentBatchCbor {
    /// 1..=`max_batch_items` (default 64) assertions.
    pub items: Vec<VerifyPaymentCbor>,
}

/// One item of a verification batch: `status` is what
/// `/v1/payments/verify` would have answered for it; `payment` is present
/// when it is 200 (accepted and committed), `error` otherwise.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyBatchItem {
    /// The item's HTTP status.
    pub status: u16,
    /// The accepted payment (status 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentAccepted>,
    /// The rejection or error (any other status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The outcomes of a verification batch, in the order of the request's items.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyBatchResponse {
    /// One outcome per submitted item.
    pub items: Vec<VerifyBatchItem>,
}

/// An accepted payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentAccepted {
    /// Always `accepted`.
    pub status: String,
    /// The credential (base64url).
    pub credential_id: String,
    /// The account (base64url).
    pub account: String,
    /// The approved transaction, as issued with the challenge.
    pub transaction: TransactionBody,
    /// `fingerprint` or `face`.
    pub modality: String,
    /// The new signature counter.
    pub counter: u64,
    /// The matched template's id (hex, 16 bytes), salted per rp by the
    /// device: which finger or face paid, within this rp only.
    pub template_id: String,
    /// SHA-256 of the statement (hex), as in the audit log.
    pub statement_hash: String,
}

/// Request: a deregistration statement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeregisterRequest {
    /// The Deregistration COSE_Sign1 (base64url).
    pub statement: String,
}

/// A credential's new status.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    /// The credential (base64url) or model id.
    pub id: String,
    /// Its status now.
    pub status: String,
}

/// Request: set a device model's status.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelStatusRequest {
    /// `active`, `revoked`, `compromised`.
    pub status: String,
}

/// Query: list an account's credentials.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountQuery {
    /// The account handle (base64url of 1 to 64 bytes).
    pub account: String,
}

/// The health check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` while a shard is unreachable.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Audit log entries so far, summed over the reachable shards.
    pub audit_entries: u64,
    /// Each shard, in shard order.
    pub shards: Vec<ShardHealth>,
}

/// One shard's reachability.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShardHealth {
    /// The shard.
    pub shard: u32,
    /// Whether it answered.
    pub up: bool,
    /// Its audit log entries (0 when down).
    pub audit_entries: u64,
}
