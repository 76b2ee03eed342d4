//! What core reads from a statement before it decides, for a caller that
//! must act on it (refuse a locked credential, check the credential a URL
//! names, audit a rejection): statements opened by steps 1–3 and decided
//! later ([`Opened`]), and registrations decided with the credential they
//! name ([`RegistrationOutcome`]). The caller parses nothing itself.

use super::checks::decode_signed;
use super::*;

/// A credential-signed statement (a [`PaymentAssertion`] or a
/// [`Deregistration`]) after steps 1–3 of its procedure: its envelope,
/// header and payload are well formed, so the credential it names is known.
/// **Nothing in it is verified yet**: the credential id is what the sender
/// wrote, good for rate limiting, routing and the audit record of a
/// rejection only. Decide it with [`Verifier::verify_opened_payment`] or
/// [`Verifier::verify_opened_deregistration`], which consume it.
#[derive(Debug, Clone)]
pub struct Opened<M> {
    pub(super) statement: Vec<u8>,
    pub(super) sign1: cose::Sign1,
    pub(super) message: M,
    credential_id: CredentialId,
}

impl<M> Opened<M> {
    /// The credential the statement names (unverified).
    pub fn credential_id(&self) -> &CredentialId {
        &self.credential_id
    }
    /// The statement's bytes, as received.
    pub fn statement(&self) -> &[u8] {
        &self.statement
    }
}

fn open<M: Message>(
    statement: &[u8],
    steps: [Step; 3],
    credential_of: impl Fn(&M) -> &CredentialId,
) -> Result<Opened<M>, Rejection> {
    let (sign1, message) = decode_signed(statement, steps)?;
    let credential_id = credential_of(&message).clone();
    Ok(Opened {
        statement: statement.to_vec(),
        sign1,
        message,
        credential_id,
    })
}

/// A registration decided by [`Verifier::verify_any_registration`], with
/// what core read from it on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationOutcome {
    /// The procedure that decided it (from the payload's message kind):
    /// [`DecisionKind::Registration`] (R1–R16),
    /// [`DecisionKind::PlatformRegistration`] (A1–A17) or
    /// [`DecisionKind::AppleRegistration`] (K1–K13).
    pub kind: DecisionKind,
    /// The credential the statement names, once its payload decoded (step
    /// 3); unverified unless `decision` is `Ok`.
    pub credential_id: Option<CredentialId>,
    /// The decision.
    pub decision: Result<RegisteredCredential, Rejection>,
}

/// The message kind a registration statement carries, if its payload can be
/// read (envelope not checked: this only chooses the procedure, whose own
/// steps 1–3 then check everything).
fn registration_kind(statement: &[u8]) -> Option<crate::messages::MessageKind> {
    cose::peek_payload(statement)
        .and_then(|(payload, _)| crate::cbor::from_deterministic_slice(&payload).ok())
        .and_then(|value| crate::messages::peek_kind(&value))
}

/// Steps P1–P3 of a payment assertion (§6.4): the statement, its header and
/// its payload. Reads no state, needs no verifier: a sharded server opens the
/// statement first and then hands it to the verifier of the credential's
/// shard ([`crate::routing`]).
pub fn open_payment(statement: &[u8]) -> Result<Opened<PaymentAssertion>, Rejection> {
    open(
        statement,
        [Step::P1Statement, Step::P2Header, Step::P3Payload],
        |a: &PaymentAssertion| &a.credential_id,
    )
}

/// Steps D1–D3 of a deregistration (§6.5): the statement, its header and its
/// payload. Reads no state (see [`open_payment`]).
pub fn open_deregistration(statement: &[u8]) -> Result<Opened<Deregistration>, Rejection> {
    open(
        statement,
        [Step::D1Statement, Step::D2Header, Step::D3Payload],
        |d: &Deregistration| &d.credential_id,
    )
}

/// The credential id a registration statement of any kind names, read
/// without checking anything (any signature form, any header): **for
/// routing only**, so that a sharded server can send the statement to the
/// shard its id's slot names ([`crate::routing::credential_slot`]). Whatever
/// it returns, the procedure on that shard then decides everything, steps 1
/// onward; a sender who writes an id with another slot than its
/// registration challenge's `credential_id_prefix` reaches a shard that
/// does not hold that challenge (R8) or is refused at R15 / A16 / K12.
pub fn registration_credential_id(statement: &[u8]) -> Option<CredentialId> {
    let (payload, _) = cose::peek_payload(statement)?;
    match registration_kind(statement)? {
        crate::messages::MessageKind::PlatformKeyRegistration => {
            PlatformKeyRegistration::from_cbor(&payload)
                .ok()
                .map(|m| m.credential_id)
        }
        crate::messages::MessageKind::AppleKeyRegistration => {
            AppleKeyRegistration::from_cbor(&payload)
                .ok()
                .map(|m| m.credential_id)
        }
        _ => KeyAttestation::from_cbor(&payload)
            .ok()
            .map(|m| m.credential_id),
    }
}

impl<S: Store, C: Clock, R: Random> Verifier<S, C, R> {
    /// [`open_payment`] (P1–P3); reads no state.
    pub fn open_payment(&self, statement: &[u8]) -> Result<Opened<PaymentAssertion>, Rejection> {
        open_payment(statement)
    }

    /// [`open_deregistration`] (D1–D3); reads no state.
    pub fn open_deregistration(
        &self,
        statement: &[u8],
    ) -> Result<Opened<Deregistration>, Rejection> {
        open_deregistration(statement)
    }

    /// Verifies a registration of any kind: a PlatformKeyRegistration (kind
    /// 7) by A1–A17 ([`Self::verify_platform_registration`]), an
    /// AppleKeyRegistration (kind 8) by K1–K13
    /// ([`Self::verify_apple_registration`]), anything else as a
    /// KeyAttestation by R1–R16 ([`Self::verify_registration`]). The
    /// statement is decoded once, by the procedure; the outcome carries the
    /// credential id its payload names, for the caller's audit record.
    pub fn verify_any_registration(&self, statement: &[u8]) -> RegistrationOutcome {
        let mut credential_id = None;
        let (kind, decision) = match registration_kind(statement) {
            Some(crate::messages::MessageKind::PlatformKeyRegistration) => (
                DecisionKind::PlatformRegistration,
                self.platform_registration(statement, &mut credential_id),
            ),
            Some(crate::messages::MessageKind::AppleKeyRegistration) => (
                DecisionKind::AppleRegistration,
                self.apple_registration(statement, &mut credential_id),
            ),
            _ => (
                DecisionKind::Registration,
                self.key_attestation(statement, &mut credential_id),
            ),
        };
        RegistrationOutcome {
            kind,
            credential_id,
            decision,
        }
    }
}
