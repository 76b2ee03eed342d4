//! The software TEE: a device with an attestation key certified by a
//! [`VendorPki`], enrolled biometric templates, sealed credential keys and
//! persistent counters, implementing [`Authenticator`].

use crate::{
    crypto::{self, TeeRng},
    error::TeeError,
    pki::VendorPki,
    state::{Credential, Der, Lockout, State, Template, FORMAT, STATE_FILE},
    user::{Faults, Presentation, SimulatedUser},
};
use biopay_core::{
    crypto::{ct_eq, sha256, sha256_parts},
    messages::validate_rp_id,
    render_transaction,
    routing::prefixed_credential_id,
    Authenticator, Clock, CredentialId, Deregistration, DeviceError, EnrollmentChange,
    KeyAttestation, Liveness, LocalCredential, Message, Modality, PaymentAssertion,
    PaymentChallenge, RegistrationChallenge, SecurityLevel, VerifiedBootState,
};
use p256::ecdsa::SigningKey;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use zeroize::Zeroizing;

/// Domain separator of the enrollment epoch.
const EPOCH_DOMAIN: &[u8] = b"biopay enrollment epoch v1";

/// When failed biometric attempts lock the biometric (like Android's
/// BiometricPrompt: a timed lockout every `lockout_after` consecutive
/// failures, a permanent one after `permanent_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiometricPolicy {
    /// Consecutive failures that start a timed lockout (default 5). 0 disables timed lockouts.
    pub lockout_after: u32,
    /// Length of a timed lockout in seconds of TEE time (default 30).
    pub lockout_secs: u64,
    /// Consecutive failures that lock the biometric until
    /// [`SoftwareTee::passcode_reset`] (default 20). 0 disables it.
    pub permanent_after: u32,
}

impl Default for BiometricPolicy {
    fn default() -> Self {
        Self {
            lockout_after: 5,
            lockout_secs: 30,
            permanent_after: 20,
        }
    }
}

/// How a simulated device is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The device model id: the attestation leaf's subject OU and the key
    /// attestation's `device_model` (1..=64 printable characters).
    pub model_id: String,
    /// Where the TEE claims its keys live (default [`SecurityLevel::Tee`]).
    pub security_level: SecurityLevel,
    /// The verified-boot state the TEE reports (default [`VerifiedBootState::Verified`]).
    pub verified_boot: VerifiedBootState,
    /// Lockout rules.
    pub biometrics: BiometricPolicy,
    /// When true, a credential whose enrollment epoch changed refuses to sign
    /// payments ([`DeviceError::KeyInvalidated`], like Android's
    /// `setInvalidatedByBiometricEnrollment`). Default false: the TEE keeps
    /// signing and reports the new epoch, and the server decides
    /// (docs/PROTOCOL.md §6.4 P15).
    pub invalidate_on_enrollment_change: bool,
}

impl DeviceConfig {
    /// A configuration for `model_id` with the defaults listed on each field.
    pub fn new(model_id: &str) -> Self {
        Self {
            model_id: model_id.to_owned(),
            security_level: SecurityLevel::Tee,
            verified_boot: VerifiedBootState::Verified,
            biometrics: BiometricPolicy::default(),
            invalidate_on_enrollment_change: false,
        }
    }
}

/// A biometric match.
pub(crate) struct Matched {
    modality: Modality,
    template: [u8; 32],
    liveness: Liveness,
    failed_before: u32,
}

/// A simulated device with a software TEE. See the crate documentation.
///
/// All device state (root secret, attestation key and chain, templates,
/// lockout state, credentials with their sealed keys and counters) is kept in
/// one file in the state directory and rewritten atomically after every
/// change, so a device survives [`SoftwareTee::open`] after a restart. The
/// simulated user, the injected faults and the last trusted-UI text are not
/// part of the device and are not persisted.
pub struct SoftwareTee {
    dir: PathBuf,
    pub(crate) state: State,
    pub(crate) attestation_key: SigningKey,
    clock: Arc<dyn Clock>,
    pub(crate) rng: TeeRng,
    user: SimulatedUser,
    faults: Faults,
    pub(crate) last_display: Option<String>,
}

impl core::fmt::Debug for SoftwareTee {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftwareTee")
            .field("vendor", &self.state.vendor_name)
            .field("model_id", &self.state.model_id)
            .field("security_level", &self.state.security_level)
            .field("state_dir", &self.dir)
            .field("templates", &self.state.templates.len())
            .field("credentials", &self.state.credentials.len())
            .field("seeded", &self.state.rng_seed.is_some())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

fn check_text(what: &str, s: &str) -> Result<(), TeeError> {
    // The same rule the protocol applies to every displayed or attested string.
    if biopay_core::messages::validate_display_text(s, "text", 64).is_err() {
        return Err(TeeError::InvalidInput(format!(
            "{what} must be 1..=64 printable characters"
        )));
    }
    Ok(())
}

impl SoftwareTee {
    /// Creates a new device in `state_dir` (which must not hold a device yet):
    /// a per-device root secret, a device attestation key (P-256) and its
    /// certificate, issued by the model's intermediate CA with subject OU =
    /// `config.model_id`; the chain is `[leaf, intermediate]`.
    ///
    /// With `seed`, every random value (secrets, keys, serial number,
    /// credential ids, nonces, template ids) comes from
    /// [`biopay_core::DangerDeterministicRandom`], so the device's output is
    /// byte-for-byte reproducible; with `None`, from the system CSPRNG.
    pub fn provision(
        pki: &VendorPki,
        config: DeviceConfig,
        state_dir: &Path,
        seed: Option<&[u8]>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TeeError> {
        check_text("model id", &config.model_id)?;
        if state_dir.join(STATE_FILE).exists() {
            return Err(TeeError::InvalidInput(format!(
                "{} already holds a device",
                state_dir.display()
            )));
        }
        let rng = TeeRng::new(seed, 0);
        let root_secret = rng.secret32()?;
        let attestation_key = crypto::generate_p256(&rng)?;
        let serial: [u8; 16] = rng.array()?;
        let chain = pki.certify_device(
            &config.model_id,
            &crypto::sec1_public(&attestation_key),
            serial,
        )?;
        // Derived, not drawn: a seeded device's random stream (and so every
        // test vector) is the same as before the KeyMint mode existed.
        let keymint_ca_serial: [u8; 16] = {
            let h = sha256_parts(&[b"biopay-tee-stub keymint ca serial", &serial]);
            let mut out = [0u8; 16];
            out.copy_from_slice(&h[..16]);
            out
        };
        let keymint_chain = pki.certify_keymint_device(
            &config.model_id,
            &crypto::sec1_public(&attestation_key),
            keymint_ca_serial,
        )?;
        let state = State {
            format: FORMAT,
            vendor_name: pki.vendor_name().to_owned(),
            model_id: config.model_id,
            security_level: config.security_level,
            verified_boot: config.verified_boot,
            lockout_after: config.biometrics.lockout_after,
            lockout_secs: config.biometrics.lockout_secs,
            permanent_after: config.biometrics.permanent_after,
            invalidate_on_enrollment_change: config.invalidate_on_enrollment_change,
            root_secret,
            attestation_key: crypto::p256_scalar(&attestation_key),
            attestation_chain: chain.into_iter().map(Der).collect(),
            templates: Vec::new(),
            lockout: Lockout::default(),
            credentials: Vec::new(),
            rng_seed: seed.map(|s| Zeroizing::new(s.to_vec())),
            rng_session: 0,
            keymint_chain: keymint_chain.into_iter().map(Der).collect(),
            keymint_ca_serial: Some(keymint_ca_serial),
            keymint_keys: Vec::new(),
        };
        state.save(state_dir)?;
        Ok(Self {
            dir: state_dir.to_owned(),
            state,
            attestation_key,
            clock,
            rng,
            user: SimulatedUser::default(),
            faults: Faults::default(),
            last_display: None,
        })
    }

    /// Reloads a device from its state directory (after a restart, or a copy
    /// made by [`Self::clone_state_to`]). A corrupt or truncated state file is
    /// [`TeeError::CorruptState`].
    pub fn open(state_dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, TeeError> {
        let mut state = State::load(state_dir)?;
        let attestation_key = crypto::p256_key(state.attestation_key.as_ref())
            .map_err(|_| TeeError::CorruptState("invalid attestation key".into()))?;
        // A fresh random stream per opening, persisted before any draw.
        state.rng_session = state
            .rng_session
            .checked_add(1)
            .ok_or_else(|| TeeError::CorruptState("session counter exhausted".into()))?;
        state.save(state_dir)?;
        let rng = TeeRng::new(
            state.rng_seed.as_ref().map(|s| s.as_slice()),
            state.rng_session,
        );
        Ok(Self {
            dir: state_dir.to_owned(),
            state,
            attestation_key,
            clock,
            rng,
            user: SimulatedUser::default(),
            faults: Faults::default(),
            last_display: None,
        })
    }

    pub(crate) fn save(&self) -> Result<(), TeeError> {
        self.state.save(&self.dir)
    }

    /// The device model id.
    pub fn model_id(&self) -> &str {
        &self.state.model_id
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// The attestation certificate chain, DER, leaf first (`[leaf, intermediate]`).
    pub fn attestation_chain(&self) -> Vec<Vec<u8>> {
        self.state
            .attestation_chain
            .iter()
            .map(|d| d.0.clone())
            .collect()
    }

    // -- biometrics -------------------------------------------------------

    fn check_label(label: &str) -> Result<(), TeeError> {
        check_text("fingerprint label", label)
    }

    fn add_template(&mut self, modality: Modality, label: Option<String>) -> Result<(), TeeError> {
        let id = self.rng.array()?;
        self.state.templates.push(Template {
            modality,
            label,
            id,
        });
        let keys = self.invalidate_keymint_keys();
        if let Err(e) = self.save() {
            self.state.templates.pop();
            self.state.keymint_keys = keys;
            return Err(e);
        }
        Ok(())
    }

    fn remove_template(&mut self, pos: usize) -> Result<(), TeeError> {
        let t = self.state.templates.remove(pos);
        let keys = self.invalidate_keymint_keys();
        if let Err(e) = self.save() {
            self.state.templates.insert(pos, t);
            self.state.keymint_keys = keys;
            return Err(e);
        }
        Ok(())
    }

    /// Enrolls a fingerprint under `label` (e.g. `"right-thumb"`). Changes the
    /// enrollment epoch of every relying party.
    pub fn enroll_fingerprint(&mut self, label: &str) -> Result<(), TeeError> {
        Self::check_label(label)?;
        if self.fingerprint(label).is_some() {
            return Err(TeeError::AlreadyEnrolled(label.to_owned()));
        }
        self.add_template(Modality::Fingerprint, Some(label.to_owned()))
    }

    /// Enrolls the (one) face. Changes the enrollment epoch of every relying party.
    pub fn enroll_face(&mut self) -> Result<(), TeeError> {
        if self.face().is_some() {
            return Err(TeeError::AlreadyEnrolled("face".into()));
        }
        self.add_template(Modality::Face, None)
    }

    /// Removes the fingerprint enrolled under `label`.
    pub fn remove_fingerprint(&mut self, label: &str) -> Result<(), TeeError> {
        let pos = self
            .fingerprint(label)
            .ok_or_else(|| TeeError::UnknownTemplate(label.to_owned()))?;
        self.remove_template(pos)
    }

    /// Removes the enrolled face.
    pub fn remove_face(&mut self) -> Result<(), TeeError> {
        let pos = self
            .face()
            .ok_or_else(|| TeeError::UnknownTemplate("face".into()))?;
        self.remove_template(pos)
    }

    fn fingerprint(&self, label: &str) -> Option<usize> {
        self.state
            .templates
            .iter()
            .position(|t| t.modality == Modality::Fingerprint && t.label.as_deref() == Some(label))
    }

    fn face(&self) -> Option<usize> {
        self.state
            .templates
            .iter()
            .position(|t| t.modality == Modality::Face)
    }

    pub(crate) fn is_enrolled(&self, m: Modality) -> bool {
        self.state.templates.iter().any(|t| t.modality == m)
    }

    /// The enrollment epoch for `rp_id`: SHA-256(`"biopay enrollment epoch v1"`
    /// || per-RP salt || the sorted random ids of all enrolled templates). The
    /// salt is HKDF-derived from the device root secret with info `"epoch" ||
    /// rp_id`, so epochs of different relying parties are unrelated.
    pub fn enrollment_epoch(&self, rp_id: &str) -> [u8; 32] {
        let salt = crypto::rp_salt(self.state.root_secret.as_ref(), b"epoch", rp_id);
        let mut ids: Vec<&[u8; 32]> = self.state.templates.iter().map(|t| &t.id).collect();
        ids.sort();
        let mut parts: Vec<&[u8]> = vec![EPOCH_DOMAIN, salt.as_ref()];
        parts.extend(ids.iter().map(|id| id.as_slice()));
        sha256_parts(&parts)
    }

    /// The template id reported to `rp_id`: the first 16 bytes of
    /// SHA-256(per-RP salt || template id), salt info `"template" || rp_id`,
    /// so template ids cannot be linked across relying parties.
    fn salted_template_id(&self, rp_id: &str, template: &[u8; 32]) -> [u8; 16] {
        let salt = crypto::rp_salt(self.state.root_secret.as_ref(), b"template", rp_id);
        let h = sha256_parts(&[salt.as_ref(), template]);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h[..16]);
        out
    }

    /// The simulated user (queue presentations and trusted-UI decisions).
    pub fn user(&mut self) -> &mut SimulatedUser {
        &mut self.user
    }

    /// The user entered the device passcode: clears every biometric lockout
    /// and the failure count.
    pub fn passcode_reset(&mut self) -> Result<(), TeeError> {
        self.state.lockout = Lockout::default();
        self.save()
    }

    /// The text the trusted UI displayed last, if any.
    pub fn last_display(&self) -> Option<&str> {
        self.last_display.as_deref()
    }

    /// Injected faults.
    pub fn faults(&mut self) -> &mut Faults {
        &mut self.faults
    }

    /// TEE time: the clock plus [`Faults::clock_skew_secs`] (saturating).
    pub fn tee_time(&self) -> u64 {
        self.clock
            .now()
            .saturating_add_signed(self.faults.clock_skew_secs)
    }

    /// One biometric attempt restricted to `allowed` modalities.
    ///
    /// A locked biometric answers [`DeviceError::LockedOut`] without consuming
    /// a presentation. A missing presentation, [`Presentation::Cancel`] and a
    /// presentation to a sensor not in `allowed` are
    /// [`DeviceError::UserCanceled`] and not counted. A non-matching finger
    /// (or a face when none is enrolled) is [`DeviceError::NoMatch`] and a
    /// spoof [`DeviceError::SpoofDetected`]; both are counted, persisted, and
    /// may start a lockout that applies from the next attempt.
    pub(crate) fn biometric_attempt(
        &mut self,
        allowed: &[Modality],
    ) -> Result<Matched, DeviceError> {
        let now = self.tee_time();
        let lockout = &mut self.state.lockout;
        if lockout.permanent {
            return Err(DeviceError::LockedOut { until: None });
        }
        if let Some(until) = lockout.locked_until {
            if now < until {
                return Err(DeviceError::LockedOut { until: Some(until) });
            }
            lockout.locked_until = None;
        }
        let Some(presentation) = self.user.next_presentation() else {
            return Err(DeviceError::UserCanceled);
        };
        let Some(modality) = presentation.modality() else {
            return Err(DeviceError::UserCanceled);
        };
        if !allowed.contains(&modality) {
            return Err(DeviceError::UserCanceled);
        }
        let found = match &presentation {
            Presentation::Finger(label) => self.fingerprint(label),
            Presentation::Face => self.face(),
            Presentation::Spoof(_) | Presentation::Cancel => None,
        };
        match (presentation, found) {
            (Presentation::Spoof(_), _) => self.failed_attempt(now, DeviceError::SpoofDetected),
            (_, None) => self.failed_attempt(now, DeviceError::NoMatch),
            (_, Some(pos)) => {
                let lockout = &mut self.state.lockout;
                let failed_before = lockout.consecutive_failures;
                *lockout = Lockout::default();
                let liveness = if modality == Modality::Face {
                    Liveness::Passed
                } else {
                    Liveness::NotChecked
                };
                Ok(Matched {
                    modality,
                    template: self.state.templates[pos].id,
                    liveness,
                    failed_before,
                })
            }
        }
    }

    fn failed_attempt(&mut self, now: u64, error: DeviceError) -> Result<Matched, DeviceError> {
        let (lockout_after, permanent_after) =
            (self.state.lockout_after, self.state.permanent_after);
        let lockout_secs = self.state.lockout_secs;
        let l = &mut self.state.lockout;
        l.consecutive_failures = l.consecutive_failures.saturating_add(1);
        if permanent_after > 0 && l.consecutive_failures >= permanent_after {
            l.permanent = true;
            l.locked_until = None;
        } else if lockout_after > 0 && l.consecutive_failures % lockout_after == 0 {
            l.locked_until = Some(now.saturating_add(lockout_secs));
        }
        self.save()?;
        Err(error)
    }

    // -- credentials ------------------------------------------------------

    fn find(&self, rp_id: &str, credential_id: &[u8]) -> Result<usize, TeeError> {
        self.state
            .credentials
            .iter()
            .position(|c| c.rp_id == rp_id && c.credential_id == credential_id)
            .ok_or(TeeError::UnknownCredential)
    }

    fn credential_key(&self, idx: usize) -> Result<SigningKey, TeeError> {
        let c = &self.state.credentials[idx];
        crypto::unseal_p256(
            self.state.root_secret.as_ref(),
            &c.rp_id,
            &c.credential_id,
            &c.sealed_key,
        )
    }

    /// Increments a credential's counter and persists it; returns the new value.
    fn next_counter(&mut self, idx: usize) -> Result<u64, TeeError> {
        let c = &mut self.state.credentials[idx];
        c.counter = c
            .counter
            .checked_add(1)
            .ok_or(TeeError::Crypto("signature counter exhausted"))?;
        let counter = c.counter;
        self.save()?;
        Ok(counter)
    }

    fn make_credential_inner(
        &mut self,
        c: &RegistrationChallenge,
        modalities: &[Modality],
    ) -> Result<Vec<u8>, DeviceError> {
        validate_rp_id(&c.rp_id)?;
        if !(1..=64).contains(&c.account_handle.len()) {
            return Err(DeviceError::InvalidChallenge(
                "account handle must be 1..=64 bytes".into(),
            ));
        }
        let mut modalities = modalities.to_vec();
        modalities.sort();
        modalities.dedup();
        if modalities.is_empty() {
            return Err(DeviceError::InvalidChallenge(
                "no modality requested".into(),
            ));
        }
        if !modalities.iter().all(|m| self.is_enrolled(*m)) {
            return Err(DeviceError::NotEnrolled);
        }
        self.biometric_attempt(&modalities)?;

        let key = crypto::generate_p256(&self.rng)?;
        // The challenge's prefix (the account's slot, docs/PROTOCOL.md
        // §4.1.9) first, then 32 random bytes.
        let random: [u8; 32] = self.rng.array()?;
        let credential_id = prefixed_credential_id(c.credential_id_prefix, &random)?;
        let id = credential_id.as_bytes().to_vec();
        let nonce = self.rng.array()?;
        let scalar = crypto::p256_scalar(&key);
        let sealed_key = crypto::seal(
            self.state.root_secret.as_ref(),
            &c.rp_id,
            &id,
            scalar.as_ref(),
            nonce,
        )?;
        drop(scalar);
        let public_key = crypto::sec1_public(&key);
        drop(key);
        let enrollment_epoch = self.enrollment_epoch(&c.rp_id);
        let attestation = KeyAttestation {
            rp_id_hash: sha256(c.rp_id.as_bytes()),
            account_handle: c.account_handle.clone(),
            challenge: c.challenge,
            credential_public_key: public_key.clone(),
            credential_id,
            modalities: modalities.clone(),
            enrollment_epoch,
            security_level: self.state.security_level,
            device_model: self.state.model_id.clone(),
            verified_boot: self.state.verified_boot,
            tee_time: self.tee_time(),
            initial_counter: 0,
        };
        let statement = crypto::sign_statement(
            &self.attestation_key,
            attestation.to_cbor(),
            &self.attestation_chain(),
        );
        self.state.credentials.push(Credential {
            rp_id: c.rp_id.clone(),
            account_handle: c.account_handle.clone(),
            credential_id: id,
            modalities,
            enrollment_epoch,
            security_level: self.state.security_level,
            public_key,
            sealed_key,
            counter: 0,
        });
        if let Err(e) = self.save() {
            self.state.credentials.pop();
            return Err(e.into());
        }
        Ok(statement)
    }

    fn get_assertion_inner(&mut self, c: &PaymentChallenge) -> Result<Vec<u8>, DeviceError> {
        c.transaction.validate()?;
        let idx = self.find(&c.rp_id, c.credential_id.as_bytes())?;
        let epoch = self.enrollment_epoch(&c.rp_id);
        if self.state.invalidate_on_enrollment_change
            && !ct_eq(&self.state.credentials[idx].enrollment_epoch, &epoch)
        {
            return Err(DeviceError::KeyInvalidated);
        }
        // The trusted UI renders the transaction itself.
        let text = render_transaction(&c.rp_id, &c.transaction);
        self.last_display = Some(text.clone());
        if !self.user.next_confirmation() {
            return Err(DeviceError::TransactionDeclined);
        }
        let allowed: Vec<Modality> = c
            .accepted_modalities
            .iter()
            .copied()
            .filter(|m| self.state.credentials[idx].modalities.contains(m))
            .collect();
        let matched = self.biometric_attempt(&allowed)?;
        let key = self.credential_key(idx)?;
        let counter = self.next_counter(idx)?;
        let assertion = PaymentAssertion {
            rp_id_hash: sha256(c.rp_id.as_bytes()),
            credential_id: c.credential_id.clone(),
            challenge: c.challenge,
            transaction_hash: c.transaction.transaction_hash(),
            display_hash: sha256(text.as_bytes()),
            modality: matched.modality,
            template_id: self.salted_template_id(&c.rp_id, &matched.template),
            liveness: matched.liveness,
            failed_attempts: matched.failed_before,
            counter,
            tee_time: self.tee_time(),
            user_confirmed: true,
            enrollment_epoch: epoch,
        };
        Ok(crypto::sign_statement(&key, assertion.to_cbor(), &[]))
    }

    fn deregister_inner(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        let idx = self.find(rp_id, credential_id.as_bytes())?;
        let key = self.credential_key(idx)?;
        let counter = self.state.credentials[idx]
            .counter
            .checked_add(1)
            .ok_or(TeeError::Crypto("signature counter exhausted"))?;
        let statement = Deregistration {
            rp_id_hash: sha256(rp_id.as_bytes()),
            credential_id: credential_id.clone(),
            counter,
            tee_time: self.tee_time(),
        };
        let signed = crypto::sign_statement(&key, statement.to_cbor(), &[]);
        let removed = self.state.credentials.remove(idx);
        if let Err(e) = self.save() {
            self.state.credentials.insert(idx, removed);
            return Err(e.into());
        }
        Ok(signed)
    }

    fn enrollment_change_inner(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        let idx = self.find(rp_id, credential_id.as_bytes())?;
        let previous_epoch = self.state.credentials[idx].enrollment_epoch;
        let current_epoch = self.enrollment_epoch(rp_id);
        if ct_eq(&previous_epoch, &current_epoch) {
            return Err(DeviceError::Keystore("enrollment unchanged".into()));
        }
        let key = self.credential_key(idx)?;
        let counter = self.next_counter(idx)?;
        let statement = EnrollmentChange {
            rp_id_hash: sha256(rp_id.as_bytes()),
            credential_id: credential_id.clone(),
            previous_epoch,
            current_epoch,
            counter,
            tee_time: self.tee_time(),
        };
        Ok(crypto::sign_statement(&key, statement.to_cbor(), &[]))
    }

    fn credentials_inner(&self, rp_id: &str) -> Result<Vec<LocalCredential>, DeviceError> {
        let epoch = self.enrollment_epoch(rp_id);
        self.state
            .credentials
            .iter()
            .filter(|c| c.rp_id == rp_id)
            .map(|c| {
                Ok(LocalCredential {
                    credential_id: CredentialId::new(c.credential_id.clone())?,
                    rp_id: c.rp_id.clone(),
                    account_handle: c.account_handle.clone(),
                    modalities: c.modalities.clone(),
                    security_level: c.security_level,
                    valid: ct_eq(&c.enrollment_epoch, &epoch),
                })
            })
            .collect()
    }

    // -- cloning and fault injection -------------------------------------

    /// Copies the whole state directory into `dir` (created if needed): the
    /// copy is the same device (same keys, same counters). Open it with
    /// [`Self::open`].
    pub fn clone_state_to(&self, dir: &Path) -> Result<(), TeeError> {
        if dir == self.dir {
            return Err(TeeError::InvalidInput(
                "cannot clone a device onto itself".into(),
            ));
        }
        crate::state::copy_dir(&self.dir, dir)
    }

    /// **Danger: fault injection.** Sets a credential's signature counter back
    /// to `value` (persisted), as a rolled-back device would.
    pub fn danger_rollback_counter(
        &mut self,
        credential_id: &CredentialId,
        value: u64,
    ) -> Result<(), TeeError> {
        let c = self
            .state
            .credentials
            .iter_mut()
            .find(|c| c.credential_id == credential_id.as_bytes())
            .ok_or(TeeError::UnknownCredential)?;
        c.counter = value;
        self.save()
    }

    /// **Danger: for adversarial tests.** Signs arbitrary `payload` bytes with
    /// a credential key as a COSE_Sign1 (no `x5chain`), bypassing every TEE
    /// check (no biometric, no trusted UI). Does not touch counters.
    pub fn danger_sign_with_credential(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, TeeError> {
        let idx = self.find(rp_id, credential_id.as_bytes())?;
        let key = self.credential_key(idx)?;
        Ok(crypto::sign_statement(&key, payload, &[]))
    }

    /// **Danger: for adversarial tests.** Signs arbitrary `payload` bytes with
    /// the device attestation key as a COSE_Sign1 with the attestation chain
    /// in `x5chain`.
    pub fn danger_sign_with_attestation_key(&self, payload: Vec<u8>) -> Result<Vec<u8>, TeeError> {
        Ok(crypto::sign_statement(
            &self.attestation_key,
            payload,
            &self.attestation_chain(),
        ))
    }

    /// **Danger: for tests of sealed storage.** Flips one bit of a
    /// credential's sealed key blob at `byte` (modulo the blob length) and
    /// persists it.
    pub fn danger_corrupt_sealed_key(
        &mut self,
        credential_id: &CredentialId,
        byte: usize,
    ) -> Result<(), TeeError> {
        let c = self
            .state
            .credentials
            .iter_mut()
            .find(|c| c.credential_id == credential_id.as_bytes())
            .ok_or(TeeError::UnknownCredential)?;
        let len = c.sealed_key.len();
        if let Some(b) = c.sealed_key.get_mut(byte % len.max(1)) {
            *b ^= 0x01;
        }
        self.save()
    }
}

/// The software TEE as a device authenticator.
///
/// - `make_credential`: every requested modality must be enrolled
///   ([`DeviceError::NotEnrolled`]); one biometric attempt of one of them
///   must match (no trusted-UI prompt).
/// - `get_assertion`: the trusted UI shows
///   [`biopay_core::render_transaction`] and the user confirms
///   ([`DeviceError::TransactionDeclined`] otherwise, not counted as a failed
///   attempt); then one biometric attempt of a modality both accepted by the
///   challenge and bound to the credential. The counter is incremented and
///   persisted before the statement is returned.
/// - `deregister` / `enrollment_change`: no biometric; signed with counter + 1.
///   `enrollment_change` with an unchanged epoch is
///   `DeviceError::Keystore("enrollment unchanged")`.
impl Authenticator for SoftwareTee {
    fn make_credential(
        &mut self,
        challenge: &RegistrationChallenge,
        modalities: &[Modality],
    ) -> Result<Vec<u8>, DeviceError> {
        self.make_credential_inner(challenge, modalities)
    }

    fn get_assertion(&mut self, challenge: &PaymentChallenge) -> Result<Vec<u8>, DeviceError> {
        self.get_assertion_inner(challenge)
    }

    fn deregister(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        self.deregister_inner(rp_id, credential_id)
    }

    fn enrollment_change(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        self.enrollment_change_inner(rp_id, credential_id)
    }

    fn credentials(&self, rp_id: &str) -> Result<Vec<LocalCredential>, DeviceError> {
        self.credentials_inner(rp_id)
    }
}

/// Lets a caller keep ownership of the device (e.g. wrap it in a
/// [`crate::TamperingApp`] for one call).
impl Authenticator for &mut SoftwareTee {
    fn make_credential(
        &mut self,
        challenge: &RegistrationChallenge,
        modalities: &[Modality],
    ) -> Result<Vec<u8>, DeviceError> {
        (**self).make_credential(challenge, modalities)
    }

    fn get_assertion(&mut self, challenge: &PaymentChallenge) -> Result<Vec<u8>, DeviceError> {
        (**self).get_assertion(challenge)
    }

    fn deregister(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        (**self).deregister(rp_id, credential_id)
    }

    fn enrollment_change(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        (**self).enrollment_change(rp_id, credential_id)
    }

    fn credentials(&self, rp_id: &str) -> Result<Vec<LocalCredential>, DeviceError> {
        (**self).credentials(rp_id)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
