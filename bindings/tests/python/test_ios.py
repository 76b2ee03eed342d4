"""The iOS flow from Python (docs/PROTOCOL.md §13): a Secure Enclave key
(SimulatedSecureEnclaveKey) bound to an App Attest attestation
(SimulatedAppAttestService), registered, paying below and above the
assertion amount, the Apple amount cap, a replayed assertion counter, an
assertion over another statement, another app's attestation, invalidation
of the key by an enrollment change, and deregistration. The Kotlin suite
(IosTest.kt) runs the same cases.

Run by scripts/test-bindings.sh with the generated `biopay` module on PYTHONPATH.
"""
import os
import unittest

from biopay import (
    AppleTrustConfig,
    BiopayError,
    Modality,
    PaymentVerifier,
    SecureEnclaveCredential,
    SecurityLevel,
    SimulatedAppAttestService,
    SimulatedSecureEnclaveKey,
    Transaction,
    VerificationError,
    sha256,
)

RP = "pay.example.com"
APP_ID = "TEAM123456.com.example.pay"


class Phone:
    """An iPhone app: its Secure Enclave key, its App Attest key, its credential."""

    def __init__(self, service):
        self.service = service
        self.se_key = SimulatedSecureEnclaveKey()
        self.aa_key = service.generate_key()
        self.credential = SecureEnclaveCredential(RP, os.urandom(32), [Modality.FACE], bytes(32))

    def sign(self, request):
        return self.credential.finish(self.se_key.sign(request.data))

    def register(self, challenge, app_id=None):
        pk = self.se_key.public_key()
        h = self.credential.registration_client_data_hash(challenge, pk)
        if app_id is None:
            obj = self.service.attest_key(self.aa_key, h)
        else:
            obj = self.service.danger_attest_key_for_app(self.aa_key, h, app_id)
        req = self.credential.prepare_registration(challenge, pk, self.aa_key.key_id(), obj)
        return self.sign(req)

    def pay(self, challenge):
        return self.sign(self.credential.prepare_payment(challenge, Modality.FACE))

    def assertion(self, statement):
        return self.service.generate_assertion(self.aa_key, sha256(statement))


def usd(order, amount):
    return Transaction(
        amount_minor=amount, currency="USD", payee_id="merchant-0042",
        payee_name="Coffee Corner", order_id=order, memo=None,
    )


class IosTest(unittest.TestCase):
    def setUp(self):
        self.service = SimulatedAppAttestService(APP_ID, True)
        self.verifier = PaymentVerifier(RP, [])
        self.verifier.trust_apple(AppleTrustConfig(
            app_ids=[APP_ID], production=True, root_certs_pem=[self.service.root_cert_pem()]))
        self.phone = Phone(self.service)
        challenge = self.verifier.registration_challenge(b"account-ios", [Modality.FACE], SecurityLevel.TEE)
        cred = self.verifier.verify_apple_registration(self.phone.register(challenge))
        self.assertEqual(cred.kind, "apple_app_attest")
        self.assertEqual(cred.device_model, "apple-app-attest")
        self.id = cred.credential_id

    def statement(self, order, amount):
        c = self.verifier.payment_challenge(self.id, usd(order, amount))
        return self.phone.pay(c)

    def rejected(self, step, fn, *args):
        with self.assertRaises(VerificationError.Rejected) as e:
            fn(*args)
        self.assertEqual(e.exception.step_code, step, e.exception.reason)
        return e.exception

    def test_small_payment_without_and_large_payment_with_an_assertion(self):
        ok = self.verifier.verify_payment(self.statement("o1", 2000))
        self.assertEqual(ok.counter, 1)
        st = self.statement("o2", 5000)
        e = self.rejected("P17", self.verifier.verify_payment, st)
        self.assertIn("App Attest assertion", e.reason)
        ok = self.verifier.verify_payment_with_app_attest(st, self.phone.assertion(st))
        self.assertEqual(ok.transaction.amount_minor, 5000)

    def test_amount_cap(self):
        st = self.statement("o1", 10_001)
        self.rejected("P17", self.verifier.verify_payment_with_app_attest, st, self.phone.assertion(st))

    def test_replayed_assertion_counter_is_refused_at_j4(self):
        st = self.statement("o1", 5000)
        self.verifier.verify_payment_with_app_attest(st, self.phone.assertion(st))
        st2 = self.statement("o2", 5000)
        stale = self.service.danger_assertion_with_counter(self.phone.aa_key, sha256(st2), 1)
        self.rejected("J4", self.verifier.verify_payment_with_app_attest, st2, stale)

    def test_assertion_over_another_statement_is_refused_at_j2(self):
        st1 = self.statement("o1", 5000)
        st2 = self.statement("o2", 5000)
        self.rejected("J2", self.verifier.verify_payment_with_app_attest, st2, self.phone.assertion(st1))

    def test_another_apps_attestation_is_refused_at_i6(self):
        other = Phone(self.service)
        c = self.verifier.registration_challenge(b"account-ios", [Modality.FACE], SecurityLevel.TEE)
        self.rejected("I6", self.verifier.verify_apple_registration,
                      other.register(c, app_id="OTHERTEAM1.com.example.other"))

    def test_invalidated_key_surfaces_as_key_invalidated(self):
        self.phone.se_key.invalidate()
        c = self.verifier.payment_challenge(self.id, usd("o1", 100))
        req = self.phone.credential.prepare_payment(c, Modality.FACE)
        with self.assertRaises(BiopayError.KeyInvalidated):
            self.phone.se_key.sign(req.data)

    def test_deregistration_stops_payments(self):
        d = self.phone.sign(self.phone.credential.prepare_deregistration())
        self.assertEqual(self.verifier.verify_deregistration(d), self.id)
        with self.assertRaises(VerificationError.InvalidRequest):
            self.verifier.payment_challenge(self.id, usd("o9", 100))


if __name__ == "__main__":
    unittest.main(verbosity=2)
