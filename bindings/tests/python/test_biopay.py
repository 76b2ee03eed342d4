"""The biopay SDK from Python: the same suite as the Kotlin one.

Run by scripts/test-bindings.sh with the generated `biopay` module on PYTHONPATH.
"""
import gc
import os
import shutil
import sys
import tempfile
import time
import unittest
import weakref

from biopay import (
    BiopayClient,
    BiopayError,
    Modality,
    PaymentVerifier,
    SecurityLevel,
    SimulatedTee,
    SimulatedVendor,
    Transaction,
    VerificationError,
)

RP = "pay.example.com"
MODEL = "acme-phone-x1"


class World:
    def __init__(self):
        self.vendor = SimulatedVendor("Acme Devices", b"python vendor")
        self.verifier = PaymentVerifier(
            RP, [self.vendor.device_model(MODEL, [Modality.FINGERPRINT, Modality.FACE], SecurityLevel.TEE)]
        )
        self.dir = tempfile.mkdtemp(prefix="biopay-py")
        self.tee = SimulatedTee.provision(self.vendor, MODEL, os.path.join(self.dir, "phone"))
        self.client = BiopayClient.with_simulated_tee(RP, self.tee)
        self.tee.enroll_fingerprint("right-thumb")
        self.tee.enroll_face()
        challenge = self.verifier.registration_challenge(
            b"account-7", [Modality.FINGERPRINT, Modality.FACE], SecurityLevel.TEE
        )
        self.tee.present_finger("right-thumb")
        attestation = self.client.register(challenge, [Modality.FINGERPRINT, Modality.FACE])
        self.credential_id = self.verifier.verify_registration(attestation).credential_id

    def tx(self, order, amount=8800):
        return Transaction(
            amount_minor=amount, currency="CNY", payee_id="merchant-0042",
            payee_name="Coffee Corner", order_id=order, memo=None,
        )

    def pay_challenge(self, order, amount=8800):
        return self.verifier.payment_challenge(self.credential_id, self.tx(order, amount))

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class BiopayTest(unittest.TestCase):
    def setUp(self):
        self.w = World()

    def tearDown(self):
        self.w.close()

    def test_full_link(self):
        w = self.w
        c = w.pay_challenge("o1")
        w.tee.present_finger("right-thumb")
        approved = w.verifier.verify_payment(w.client.authorize(c))
        self.assertEqual(approved.transaction.amount_minor, 8800)
        self.assertEqual(approved.modality, Modality.FINGERPRINT)
        self.assertEqual(approved.counter, 1)
        self.assertIn("\nPay 88.00 CNY\n", w.tee.last_display())
        creds = w.client.credentials()
        self.assertEqual([c.credential_id for c in creds], [w.credential_id])
        self.assertTrue(creds[0].valid)

    def test_replay_rejected_at_p9(self):
        w = self.w
        c = w.pay_challenge("o1")
        w.tee.present_finger("right-thumb")
        a = w.client.authorize(c)
        w.verifier.verify_payment(a)
        with self.assertRaises(VerificationError.Rejected) as e:
            w.verifier.verify_payment(a)
        self.assertEqual((e.exception.step_code, e.exception.step_name), ("P9", "challenge"))

    def test_tampered_signature_rejected_at_p5(self):
        w = self.w
        c = w.pay_challenge("o1")
        w.tee.present_finger("right-thumb")
        a = bytearray(w.client.authorize(c))
        a[-1] ^= 1
        with self.assertRaises(VerificationError.Rejected) as e:
            w.verifier.verify_payment(bytes(a))
        self.assertEqual(e.exception.step_code, "P5")

    def test_high_value_needs_a_live_face(self):
        w = self.w
        c = w.pay_challenge("big", 500_000)
        w.tee.present_finger("right-thumb")
        with self.assertRaises(BiopayError.UserCanceled):
            w.client.authorize(c)
        w.tee.present_face()
        ok = w.verifier.verify_payment(w.client.authorize(c))
        self.assertEqual(ok.modality, Modality.FACE)
        self.assertTrue(ok.liveness_passed)

    def test_error_mapping(self):
        w = self.w
        c = w.pay_challenge("o1")
        w.tee.present_finger("stranger")
        with self.assertRaises(BiopayError.NoMatch):
            w.client.authorize(c)
        w.tee.present_spoof(Modality.FACE)
        with self.assertRaises(BiopayError.SpoofDetected):
            w.client.authorize(c)
        w.tee.present_cancel()
        with self.assertRaises(BiopayError.UserCanceled):
            w.client.authorize(c)
        w.tee.will_confirm(False)
        with self.assertRaises(BiopayError.TransactionDeclined):
            w.client.authorize(c)
        with self.assertRaises(BiopayError.InvalidChallenge) as e:
            w.client.authorize(b"\x01\x02")
        self.assertTrue(e.exception.reason)

    def test_lockout_says_until_when(self):
        w = self.w
        c = w.pay_challenge("o1")
        for _ in range(5):
            w.tee.present_finger("stranger")
            with self.assertRaises(BiopayError.NoMatch):
                w.client.authorize(c)
        w.tee.present_finger("right-thumb")
        with self.assertRaises(BiopayError.LockedOut) as e:
            w.client.authorize(c)
        now = int(time.time())
        self.assertIsNotNone(e.exception.until_epoch_seconds)
        self.assertTrue(now < e.exception.until_epoch_seconds <= now + 31)
        w.tee.passcode_reset()
        w.verifier.verify_payment(w.client.authorize(c))

    def test_deleted_key_and_not_enrolled(self):
        w = self.w
        c = w.pay_challenge("o1")
        d = w.client.deregister(w.credential_id)
        self.assertEqual(w.verifier.verify_deregistration(d), w.credential_id)
        w.tee.present_finger("right-thumb")
        with self.assertRaises(BiopayError.KeyInvalidated):
            w.client.authorize(c)
        bare = SimulatedTee.provision(w.vendor, MODEL, os.path.join(w.dir, "bare"))
        client = BiopayClient.with_simulated_tee(RP, bare)
        reg = w.verifier.registration_challenge(b"a", [Modality.FACE], SecurityLevel.TEE)
        with self.assertRaises(BiopayError.NotEnrolled):
            client.register(reg, [Modality.FACE])

    def test_verification_errors(self):
        w = self.w
        other = PaymentVerifier("shop.example.org", [w.vendor.device_model(MODEL, [Modality.FINGERPRINT], SecurityLevel.TEE)])
        reg = other.registration_challenge(b"x", [Modality.FINGERPRINT], SecurityLevel.TEE)
        with self.assertRaises(BiopayError.InvalidChallenge):
            w.client.register(reg, [Modality.FINGERPRINT])
        with self.assertRaises(VerificationError.InvalidRequest) as e:
            w.verifier.payment_challenge(w.credential_id, w.tx("o", -1))
        self.assertIn("positive", e.exception.reason)

    def test_revoked_model_refused_at_p7(self):
        w = self.w
        c = w.pay_challenge("o1")
        w.tee.present_finger("right-thumb")
        a = w.client.authorize(c)
        self.assertTrue(w.verifier.revoke_model(MODEL))
        with self.assertRaises(VerificationError.Rejected) as e:
            w.verifier.verify_payment(a)
        self.assertEqual(e.exception.step_code, "P7")

    def test_objects_are_released(self):
        w = self.w
        ref = weakref.ref(w.client)
        w.client = None
        gc.collect()
        self.assertIsNone(ref(), "the client object was not released")

    def test_device_survives_restart(self):
        w = self.w
        path = os.path.join(w.dir, "phone")
        w.client = None
        w.tee = None
        gc.collect()
        tee = SimulatedTee.open(path)
        client = BiopayClient.with_simulated_tee(RP, tee)
        c = w.pay_challenge("o2")
        tee.present_finger("right-thumb")
        self.assertEqual(w.verifier.verify_payment(client.authorize(c)).counter, 1)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
    print(f"python: {passed} passed, {len(result.failures) + len(result.errors)} failed")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
