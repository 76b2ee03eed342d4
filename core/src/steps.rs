//! The numbered verification steps of docs/PROTOCOL.md §6, §12.5 and §13
//! ([`Step`]): their codes and stable names. What went wrong at a step is a
//! `Reason`; the step and the reason together are a `Rejection` (both in
//! `error`, which builds on this module).

macro_rules! steps {
    ($($(#[$m:meta])* $variant:ident = ($code:literal, $name:literal)),+ $(,)?) => {
        /// A numbered verification step of docs/PROTOCOL.md §6.
        ///
        /// `R` steps verify a [`crate::KeyAttestation`] (§6.3), `P` steps a
        /// [`crate::PaymentAssertion`] (§6.4), `D` steps a
        /// [`crate::Deregistration`] (§6.5), `E` steps an
        /// [`crate::EnrollmentChange`] (§6.6), `A` steps a
        /// [`crate::PlatformKeyRegistration`] (§12.5), `K` steps an
        /// [`crate::AppleKeyRegistration`] (§13.8), `I` steps an Apple App
        /// Attest attestation (§13.4) and `J` steps an App Attest assertion
        /// (§13.5, also beside a payment, §13.9).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Step { $($(#[$m])* $variant),+ }

        impl Step {
            /// The step's code as in docs/PROTOCOL.md, e.g. `"P12"`.
            pub fn code(self) -> &'static str {
                match self { $(Self::$variant => $code),+ }
            }
            /// The step's stable name, e.g. `"transaction-hash"`.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
            /// Every step, in order.
            pub const ALL: &'static [Step] = &[$(Self::$variant),+];
        }
    };
}

steps! {
    /// R1: the statement is a deterministic, tagged COSE_Sign1.
    R1Statement = ("R1", "statement"),
    /// R2: protected header is exactly alg ES256 + x5chain.
    R2Header = ("R2", "header"),
    /// R3: the payload is a well-formed KeyAttestation.
    R3Payload = ("R3", "payload"),
    /// R4: the device model is known and active.
    R4DeviceModel = ("R4", "device-model"),
    /// R5: the x5chain verifies to a trust root of the model at the current time.
    R5AttestationChain = ("R5", "attestation-chain"),
    /// R6: the statement is signed by the attestation leaf's key.
    R6Signature = ("R6", "signature"),
    /// R7: rp_id_hash is SHA-256 of this verifier's rp id.
    R7RpId = ("R7", "rp-id"),
    /// R8: the challenge was issued as a registration challenge and is unused.
    R8Challenge = ("R8", "challenge"),
    /// R9: the challenge has not expired.
    R9ChallengeExpiry = ("R9", "challenge-expiry"),
    /// R10: the account handle is the one the challenge was issued for.
    R10Account = ("R10", "account"),
    /// R11: the bound modalities are accepted by the challenge and the device model.
    R11Modality = ("R11", "modality"),
    /// R12: the key's security level meets the challenge and policy and does not exceed the model's.
    R12SecurityLevel = ("R12", "security-level"),
    /// R13: the verified-boot state is acceptable.
    R13BootState = ("R13", "boot-state"),
    /// R14: the TEE clock is within the allowed skew.
    R14TeeClock = ("R14", "tee-clock"),
    /// R15: the credential id is not registered yet.
    R15CredentialId = ("R15", "credential-id"),
    /// R16: the challenge is consumed and the credential stored atomically.
    R16Commit = ("R16", "commit"),

    /// P1: the statement is a deterministic, tagged COSE_Sign1.
    P1Statement = ("P1", "statement"),
    /// P2: protected header is exactly alg ES256.
    P2Header = ("P2", "header"),
    /// P3: the payload is a well-formed PaymentAssertion.
    P3Payload = ("P3", "payload"),
    /// P4: the credential is registered.
    P4Credential = ("P4", "credential"),
    /// P5: the statement is signed by the credential key.
    P5Signature = ("P5", "signature"),
    /// P6: the credential is active.
    P6CredentialStatus = ("P6", "credential-status"),
    /// P7: the credential's device model is active.
    P7DeviceModel = ("P7", "device-model"),
    /// P8: rp_id_hash is SHA-256 of this verifier's rp id.
    P8RpId = ("P8", "rp-id"),
    /// P9: the challenge was issued as a payment challenge and is unused.
    P9Challenge = ("P9", "challenge"),
    /// P10: the challenge has not expired.
    P10ChallengeExpiry = ("P10", "challenge-expiry"),
    /// P11: the challenge was issued for this account and credential.
    P11ChallengeBinding = ("P11", "challenge-binding"),
    /// P12: transaction_hash matches the transaction stored with the challenge.
    P12TransactionHash = ("P12", "transaction-hash"),
    /// P13: display_hash matches the rendering of that transaction.
    P13DisplayHash = ("P13", "display-hash"),
    /// P14: the user confirmed on the trusted UI.
    P14UserConfirmed = ("P14", "user-confirmed"),
    /// P15: the enrollment epoch is the registered one.
    P15EnrollmentEpoch = ("P15", "enrollment-epoch"),
    /// P16: modality and liveness are accepted for this credential and challenge.
    P16Modality = ("P16", "modality"),
    /// P17: the policy for this amount is met.
    P17Policy = ("P17", "policy"),
    /// P18: the TEE clock is within the allowed skew.
    P18TeeClock = ("P18", "tee-clock"),
    /// P19: the counter is greater than the stored counter.
    P19Counter = ("P19", "counter"),
    /// P20: challenge consumed and counter advanced atomically.
    P20Commit = ("P20", "commit"),

    /// D1: the statement is a deterministic, tagged COSE_Sign1.
    D1Statement = ("D1", "statement"),
    /// D2: protected header is exactly alg ES256.
    D2Header = ("D2", "header"),
    /// D3: the payload is a well-formed Deregistration.
    D3Payload = ("D3", "payload"),
    /// D4: the credential is registered.
    D4Credential = ("D4", "credential"),
    /// D5: the statement is signed by the credential key.
    D5Signature = ("D5", "signature"),
    /// D6: rp_id_hash is SHA-256 of this verifier's rp id.
    D6RpId = ("D6", "rp-id"),
    /// D7: the credential is not deregistered already.
    D7CredentialStatus = ("D7", "credential-status"),
    /// D8: the counter is greater than the stored counter.
    D8Counter = ("D8", "counter"),
    /// D9: status and counter updated atomically.
    D9Commit = ("D9", "commit"),

    /// E1: the statement is a deterministic, tagged COSE_Sign1.
    E1Statement = ("E1", "statement"),
    /// E2: protected header is exactly alg ES256.
    E2Header = ("E2", "header"),
    /// E3: the payload is a well-formed EnrollmentChange.
    E3Payload = ("E3", "payload"),
    /// E4: the credential is registered.
    E4Credential = ("E4", "credential"),
    /// E5: the statement is signed by the credential key.
    E5Signature = ("E5", "signature"),
    /// E6: rp_id_hash is SHA-256 of this verifier's rp id.
    E6RpId = ("E6", "rp-id"),
    /// E7: the credential is not deregistered.
    E7CredentialStatus = ("E7", "credential-status"),
    /// E8: previous_epoch is the registered epoch and current_epoch differs.
    E8Epoch = ("E8", "epoch"),
    /// E9: the counter is greater than the stored counter.
    E9Counter = ("E9", "counter"),
    /// E10: status and counter updated atomically.
    E10Commit = ("E10", "commit"),

    /// A1: the statement is a deterministic, tagged COSE_Sign1.
    A1Statement = ("A1", "statement"),
    /// A2: protected header is exactly alg ES256 + x5chain; signature 64-byte fixed or DER.
    A2Header = ("A2", "header"),
    /// A3: the payload is a well-formed PlatformKeyRegistration.
    A3Payload = ("A3", "payload"),
    /// A4: the verifier trusts this platform (Android trust is configured).
    A4Platform = ("A4", "platform"),
    /// A5: the x5chain verifies to an Android root key at the current time.
    A5AttestationChain = ("A5", "attestation-chain"),
    /// A6: no certificate on the path is revoked or suspended.
    A6Revocation = ("A6", "revocation"),
    /// A7: the leaf carries a well-formed KeyDescription.
    A7KeyDescription = ("A7", "key-description"),
    /// A8: the attested key is an EC P-256 key.
    A8AttestedKey = ("A8", "attested-key"),
    /// A9: the statement is signed by the attested key (proof of possession).
    A9Signature = ("A9", "signature"),
    /// A10: rp_id_hash is SHA-256 of this verifier's rp id.
    A10RpId = ("A10", "rp-id"),
    /// A11: the challenge was issued as a registration challenge and is unused.
    A11Challenge = ("A11", "challenge"),
    /// A12: the challenge has not expired.
    A12ChallengeExpiry = ("A12", "challenge-expiry"),
    /// A13: the account handle is the one the challenge was issued for.
    A13Account = ("A13", "account"),
    /// A14: the modalities are accepted by the challenge.
    A14Modality = ("A14", "modality"),
    /// A15: the KeyDescription meets the Android registration policy (all failures reported).
    A15AndroidPolicy = ("A15", "android-policy"),
    /// A16: the credential id is not registered yet.
    A16CredentialId = ("A16", "credential-id"),
    /// A17: the challenge is consumed and the credential stored atomically.
    A17Commit = ("A17", "commit"),

    /// K1: the statement is a deterministic, tagged COSE_Sign1 with a payload.
    K1Statement = ("K1", "statement"),
    /// K2: protected header is exactly alg ES256; signature 64-byte fixed or DER.
    K2Header = ("K2", "header"),
    /// K3: the payload is a well-formed AppleKeyRegistration.
    K3Payload = ("K3", "payload"),
    /// K4: the verifier trusts Apple App Attest (Apple trust is configured).
    K4Platform = ("K4", "platform"),
    /// K5: the statement is signed by the Secure Enclave key it carries (proof of possession).
    K5Signature = ("K5", "signature"),
    /// K6: rp_id_hash is SHA-256 of this verifier's rp id.
    K6RpId = ("K6", "rp-id"),
    /// K7: the challenge was issued as a registration challenge and is unused.
    K7Challenge = ("K7", "challenge"),
    /// K8: the challenge has not expired.
    K8ChallengeExpiry = ("K8", "challenge-expiry"),
    /// K9: the account handle is the one the challenge was issued for.
    K9Account = ("K9", "account"),
    /// K10: the modalities are accepted by the challenge.
    K10Modality = ("K10", "modality"),
    /// K11: the challenge and the policy accept an unattested Secure Enclave key (TEE level).
    K11SecurityLevel = ("K11", "security-level"),
    /// K12: the credential id is not registered yet.
    K12CredentialId = ("K12", "credential-id"),
    /// K13: the challenge is consumed and the credential stored atomically.
    K13Commit = ("K13", "commit"),

    /// I1: the App Attest attestation object is well formed; `fmt` is "apple-appattest".
    I1AttestationObject = ("I1", "attestation-object"),
    /// I2: the x5c chain verifies to an Apple App Attestation root key at the verification time.
    I2AttestationChain = ("I2", "attestation-chain"),
    /// I3: SHA-256(authData ‖ clientDataHash) equals the leaf's nonce extension.
    I3Nonce = ("I3", "nonce"),
    /// I4: the leaf key is P-256; its key id (SHA-256 of the point) is the app's key id.
    I4KeyId = ("I4", "key-id"),
    /// I5: the authenticator data is well formed (attested credential data present).
    I5AuthenticatorData = ("I5", "authenticator-data"),
    /// I6: rpIdHash is SHA-256 of an allowed app id.
    I6AppId = ("I6", "app-id"),
    /// I7: the counter is 0.
    I7Counter = ("I7", "counter"),
    /// I8: the aaguid is the configured environment's.
    I8Aaguid = ("I8", "aaguid"),
    /// I9: credentialId is the key id.
    I9CredentialId = ("I9", "credential-id"),
    /// I10: the credential public key is the leaf's key.
    I10CredentialKey = ("I10", "credential-key"),

    /// J1: the App Attest assertion object is well formed (37-byte authenticatorData).
    J1AssertionObject = ("J1", "assertion-object"),
    /// J2: the signature over SHA-256(authenticatorData ‖ clientDataHash) verifies with the attested key.
    J2Signature = ("J2", "signature"),
    /// J3: rpIdHash is SHA-256 of the credential's app id.
    J3AppId = ("J3", "app-id"),
    /// J4: the counter is greater than the stored counter.
    J4Counter = ("J4", "counter"),
}

impl core::fmt::Display for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}
