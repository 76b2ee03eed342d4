//! A malicious app between the server and the TEE.

use biopay_core::{
    Authenticator, CredentialId, DeviceError, LocalCredential, Modality, PaymentChallenge,
    RegistrationChallenge, Transaction,
};

/// A malicious app: alters the transaction of every [`PaymentChallenge`]
/// before handing it to the TEE, and passes everything else through. The TEE
/// then shows and signs the altered transaction, which the verifier rejects
/// (docs/PROTOCOL.md §6.4 P12).
pub struct TamperingApp<A> {
    inner: A,
    tamper: Box<dyn FnMut(&mut Transaction)>,
}

impl<A> core::fmt::Debug for TamperingApp<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TamperingApp").finish_non_exhaustive()
    }
}

impl<A: Authenticator> TamperingApp<A> {
    /// Wraps `inner`; `tamper` edits each payment's transaction.
    pub fn new(inner: A, tamper: impl FnMut(&mut Transaction) + 'static) -> Self {
        Self {
            inner,
            tamper: Box::new(tamper),
        }
    }

    /// The wrapped authenticator.
    pub fn into_inner(self) -> A {
        self.inner
    }
}

impl<A: Authenticator> Authenticator for TamperingApp<A> {
    fn make_credential(
        &mut self,
        challenge: &RegistrationChallenge,
        modalities: &[Modality],
    ) -> Result<Vec<u8>, DeviceError> {
        self.inner.make_credential(challenge, modalities)
    }

    fn get_assertion(&mut self, challenge: &PaymentChallenge) -> Result<Vec<u8>, DeviceError> {
        let mut altered = challenge.clone();
        (self.tamper)(&mut altered.transaction);
        self.inner.get_assertion(&altered)
    }

    fn deregister(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        self.inner.deregister(rp_id, credential_id)
    }

    fn enrollment_change(
        &mut self,
        rp_id: &str,
        credential_id: &CredentialId,
    ) -> Result<Vec<u8>, DeviceError> {
        self.inner.enrollment_change(rp_id, credential_id)
    }

    fn credentials(&self, rp_id: &str) -> Result<Vec<LocalCredential>, DeviceError> {
        self.inner.credentials(rp_id)
    }
}
