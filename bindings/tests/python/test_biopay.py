"""The biopay SDK from Python: the same suite as the Kotlin one.

Run by scripts/test-bindings.sh with the generated `biopay` module on PYTHONPATH.
The platform-keystore cases use a Python keystore on the `cryptography` package
(PyKeystore, the counterpart of the Kotlin JcaKeystore).
"""
import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import weakref

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from biopay import (
    AndroidTrustConfig,
    BiopayClient,
    BiopayError,
    GeneratedKey,
    KeyState,
    Modality,
    PlatformKeystore,
    PaymentVerifier,
    SecurityLevel,
    SimulatedTee,
    SimulatedVendor,
    Transaction,
    VerificationError,
)

run = asyncio.run  # the client's calls are coroutines

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
        attestation = run(self.client.register(challenge, [Modality.FINGERPRINT, Modality.FACE]))
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
        approved = w.verifier.verify_payment(run(w.client.authorize(c)))
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
        a = run(w.client.authorize(c))
        w.verifier.verify_payment(a)
        with self.assertRaises(VerificationError.Rejected) as e:
            w.verifier.verify_payment(a)
        self.assertEqual((e.exception.step_code, e.exception.step_name), ("P9", "challenge"))

    def test_verify_payments_decides_each_statement_as_verify_payment_would(self):
        w = self.w
        statements = []
        for order in ("b1", "b2"):
            c = w.pay_challenge(order)
            w.tee.present_finger("right-thumb")
            statements.append(run(w.client.authorize(c)))
        garbage = b"\x42" * 40
        out = w.verifier.verify_payments([statements[0], garbage, statements[1], statements[0]])
        self.assertEqual(len(out), 4)
        self.assertEqual([o.approved.counter if o.approved else None for o in out], [1, None, 2, None])
        self.assertEqual([(o.rejection.step_code, o.rejection.step_name) if o.rejection else None for o in out],
                         [None, ("P1", "statement"), None, ("P9", "challenge")])
        self.assertEqual(w.verifier.verify_payments([]), [])

    def test_tampered_signature_rejected_at_p5(self):
        w = self.w
        c = w.pay_challenge("o1")
        w.tee.present_finger("right-thumb")
        a = bytearray(run(w.client.authorize(c)))
        a[-1] ^= 1
        with self.assertRaises(VerificationError.Rejected) as e:
            w.verifier.verify_payment(bytes(a))
        self.assertEqual(e.exception.step_code, "P5")

    def test_high_value_needs_a_live_face(self):
        w = self.w
        c = w.pay_challenge("big", 500_000)
        w.tee.present_finger("right-thumb")
        with self.assertRaises(BiopayError.UserCanceled):
            run(w.client.authorize(c))
        w.tee.present_face()
        ok = w.verifier.verify_payment(run(w.client.authorize(c)))
        self.assertEqual(ok.modality, Modality.FACE)
        self.assertTrue(ok.liveness_passed)

    def test_error_mapping(self):
        w = self.w
        c = w.pay_challenge("o1")
        w.tee.present_finger("stranger")
        with self.assertRaises(BiopayError.NoMatch):
            run(w.client.authorize(c))
        w.tee.present_spoof(Modality.FACE)
        with self.assertRaises(BiopayError.SpoofDetected):
            run(w.client.authorize(c))
        w.tee.present_cancel()
        with self.assertRaises(BiopayError.UserCanceled):
            run(w.client.authorize(c))
        w.tee.will_confirm(False)
        with self.assertRaises(BiopayError.TransactionDeclined):
            run(w.client.authorize(c))
        with self.assertRaises(BiopayError.InvalidChallenge) as e:
            run(w.client.authorize(b"\x01\x02"))
        self.assertTrue(e.exception.reason)

    def test_lockout_says_until_when(self):
        w = self.w
        c = w.pay_challenge("o1")
        for _ in range(5):
            w.tee.present_finger("stranger")
            with self.assertRaises(BiopayError.NoMatch):
                run(w.client.authorize(c))
        w.tee.present_finger("right-thumb")
        with self.assertRaises(BiopayError.LockedOut) as e:
            run(w.client.authorize(c))
        now = int(time.time())
        self.assertIsNotNone(e.exception.until_epoch_seconds)
        self.assertTrue(now < e.exception.until_epoch_seconds <= now + 31)
        w.tee.passcode_reset()
        w.verifier.verify_payment(run(w.client.authorize(c)))

    def test_deleted_key_and_not_enrolled(self):
        w = self.w
        c = w.pay_challenge("o1")
        d = run(w.client.deregister(w.credential_id))
        self.assertEqual(w.verifier.verify_deregistration(d), w.credential_id)
        w.tee.present_finger("right-thumb")
        with self.assertRaises(BiopayError.KeyInvalidated):
            run(w.client.authorize(c))
        bare = SimulatedTee.provision(w.vendor, MODEL, os.path.join(w.dir, "bare"))
        client = BiopayClient.with_simulated_tee(RP, bare)
        reg = w.verifier.registration_challenge(b"a", [Modality.FACE], SecurityLevel.TEE)
        with self.assertRaises(BiopayError.NotEnrolled):
            run(client.register(reg, [Modality.FACE]))

    def test_verification_errors(self):
        w = self.w
        other = PaymentVerifier("shop.example.org", [w.vendor.device_model(MODEL, [Modality.FINGERPRINT], SecurityLevel.TEE)])
        reg = other.registration_challenge(b"x", [Modality.FINGERPRINT], SecurityLevel.TEE)
        with self.assertRaises(BiopayError.InvalidChallenge):
            run(w.client.register(reg, [Modality.FINGERPRINT]))
        with self.assertRaises(VerificationError.InvalidRequest) as e:
            w.verifier.payment_challenge(w.credential_id, w.tx("o", -1))
        self.assertIn("positive", e.exception.reason)

    def test_revoked_model_refused_at_p7(self):
        w = self.w
        c = w.pay_challenge("o1")
        w.tee.present_finger("right-thumb")
        a = run(w.client.authorize(c))
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
        self.assertEqual(w.verifier.verify_payment(run(client.authorize(c))).counter, 1)


PACKAGE = "com.example.pay"
DIGEST = bytes([0xAB] * 32)


class PyKeystore(PlatformKeystore):
    """A test double of Android Keystore: P-256 keys in memory by alias, DER
    ECDSA/SHA-256 signatures (`cryptography`), and an attestation chain from the
    simulated vendor's KeyMint test-double CA. `sign_error` is raised by the next
    `sign`, as a biometric prompt's failure would be; `gate` holds the prompt up."""

    def __init__(self, vendor):
        self.vendor = vendor
        self.keys = {}
        self.invalidated = set()
        self.prompts = []
        self.sign_error = None
        self.sign_delay = 0  # seconds before `sign` answers
        self.gate = None  # an asyncio.Event `sign` waits for (the user at the prompt)
        self.prompt_shown = None  # an asyncio.Event set when a prompt is up
        self.prompts_up = 0
        self.most_prompts_up = 0
        self.prompts_cancelled = 0

    async def generate_key(self, alias, attestation_challenge, require_strong_box):
        if require_strong_box:
            raise BiopayError.Keystore("no StrongBox here")
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.keys[alias] = key
        chain = self.vendor.certify_keystore_key(public, attestation_challenge, PACKAGE, DIGEST, False)
        return GeneratedKey(public_key=public, attestation_chain=chain, strong_box=False)

    async def sign(self, alias, data, prompt_text):
        self.prompts.append(prompt_text)
        self.prompts_up += 1
        self.most_prompts_up = max(self.most_prompts_up, self.prompts_up)
        try:
            if self.prompt_shown is not None:
                self.prompt_shown.set()
            if self.gate is not None:
                await self.gate.wait()
            if self.sign_delay:
                await asyncio.sleep(self.sign_delay)
        except asyncio.CancelledError:
            self.prompts_cancelled += 1  # a real keystore dismisses the prompt here
            raise
        finally:
            self.prompts_up -= 1
        if self.sign_error is not None:
            error, self.sign_error = self.sign_error, None
            raise error
        if alias in self.invalidated or alias not in self.keys:
            raise BiopayError.KeyInvalidated()
        return self.keys[alias].sign(data, ec.ECDSA(hashes.SHA256()))

    def delete_key(self, alias):
        self.keys.pop(alias, None)
        self.invalidated.discard(alias)

    def key_state(self, alias):
        if alias not in self.keys:
            return KeyState.MISSING
        return KeyState.INVALIDATED if alias in self.invalidated else KeyState.VALID


def trust(vendor, min_patch=202401):
    return AndroidTrustConfig(
        root_spkis=[vendor.android_trust_root()], include_google_roots=False,
        package_name=PACKAGE, signing_cert_digests=[DIGEST],
        min_os_patch_level=min_patch, require_strong_box=False,
    )


class KeystoreTest(unittest.TestCase):
    def setUp(self):
        self.vendor = SimulatedVendor("Acme Devices", b"python keystore vendor")
        self.verifier = PaymentVerifier(RP, [])
        self.verifier.trust_android(trust(self.vendor))
        self.dir = tempfile.mkdtemp(prefix="biopay-py-ks")
        self.tee = SimulatedTee.provision(self.vendor, MODEL, os.path.join(self.dir, "phone"))
        self.tee.enroll_fingerprint("right-thumb")
        self.app_dir = os.path.join(self.dir, "app")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def register(self, client, before_sign=lambda: None):
        c = self.verifier.registration_challenge(b"account-7", [Modality.FINGERPRINT], SecurityLevel.TEE)
        before_sign()
        reg = self.verifier.verify_platform_registration(run(client.register(c, [Modality.FINGERPRINT])))
        self.assertEqual(reg.kind, "platform_keystore")
        return reg.credential_id

    def pay_challenge(self, credential_id, order):
        return self.verifier.payment_challenge(credential_id, Transaction(
            amount_minor=8800, currency="CNY", payee_id="merchant-0042",
            payee_name="Coffee Corner", order_id=order, memo=None,
        ))

    def test_full_link_on_simulated_tee_as_keystore(self):
        ks = self.tee.as_keystore(PACKAGE, DIGEST)
        client = BiopayClient.with_keystore(RP, ks, self.app_dir)
        cid = self.register(client, lambda: self.tee.present_finger("right-thumb"))
        self.assertEqual(self.tee.last_display(), f"Register this device for payments at {RP}")
        self.tee.present_finger("right-thumb")
        ok = self.verifier.verify_payment(run(client.authorize(self.pay_challenge(cid, "o1"))))
        self.assertEqual((ok.counter, ok.modality, ok.liveness_passed), (1, Modality.FINGERPRINT, False))
        self.assertIn("\nPay 88.00 CNY\n", self.tee.last_display())
        self.tee.present_finger("right-thumb")
        self.assertEqual(self.verifier.verify_deregistration(run(client.deregister(cid))), cid)
        self.assertEqual(client.credentials(), [])

    def test_full_link_with_a_python_keystore(self):
        ks = PyKeystore(self.vendor)
        client = BiopayClient.with_keystore(RP, ks, self.app_dir)
        cid = self.register(client)
        ok = self.verifier.verify_payment(run(client.authorize(self.pay_challenge(cid, "o1"))))
        self.assertEqual(ok.counter, 1)
        self.assertEqual(len(ks.prompts), 2)
        self.assertTrue(ks.prompts[1].startswith(f"{RP}\nPay 88.00 CNY\nTo: Coffee Corner"))
        creds = client.credentials()
        self.assertEqual([c.credential_id for c in creds], [cid])
        self.assertTrue(creds[0].valid)
        self.assertEqual(self.verifier.verify_deregistration(run(client.deregister(cid))), cid)
        self.assertEqual(ks.keys, {})

    def test_biopay_errors_raised_in_python_keep_their_variant(self):
        ks = PyKeystore(self.vendor)
        client = BiopayClient.with_keystore(RP, ks, self.app_dir)
        cid = self.register(client)
        ks.sign_error = BiopayError.UserCanceled()
        with self.assertRaises(BiopayError.UserCanceled):
            run(client.authorize(self.pay_challenge(cid, "o1")))
        ks.sign_error = BiopayError.LockedOut(until_epoch_seconds=1_900_000_000)
        with self.assertRaises(BiopayError.LockedOut) as e:
            run(client.authorize(self.pay_challenge(cid, "o2")))
        self.assertEqual(e.exception.until_epoch_seconds, 1_900_000_000)
        ks.sign_error = BiopayError.NoMatch()
        with self.assertRaises(BiopayError.NoMatch):
            run(client.authorize(self.pay_challenge(cid, "o3")))
        # Three failed prompts used up three counter values.
        self.assertEqual(self.verifier.verify_payment(run(client.authorize(self.pay_challenge(cid, "o4")))).counter, 4)

    def test_any_other_exception_arrives_as_keystore(self):
        ks = PyKeystore(self.vendor)
        client = BiopayClient.with_keystore(RP, ks, self.app_dir)
        cid = self.register(client)
        ks.sign_error = RuntimeError("sensor on fire")
        with self.assertRaises(BiopayError.Keystore) as e:
            run(client.authorize(self.pay_challenge(cid, "o1")))
        self.assertIn("sensor on fire", e.exception.reason)
        self.assertIn("RuntimeError", e.exception.reason)

    def test_invalidated_key_is_key_invalidated(self):
        ks = self.tee.as_keystore(PACKAGE, DIGEST)
        client = BiopayClient.with_keystore(RP, ks, self.app_dir)
        cid = self.register(client, lambda: self.tee.present_finger("right-thumb"))
        self.tee.enroll_fingerprint("left-thumb")
        self.assertFalse(client.credentials()[0].valid)
        self.tee.present_finger("right-thumb")
        with self.assertRaises(BiopayError.KeyInvalidated):
            run(client.authorize(self.pay_challenge(cid, "o1")))
        py = PyKeystore(self.vendor)
        other = BiopayClient.with_keystore(RP, py, os.path.join(self.dir, "app2"))
        cid2 = self.register(other)
        py.invalidated.update(py.keys)
        with self.assertRaises(BiopayError.KeyInvalidated):
            run(other.authorize(self.pay_challenge(cid2, "o2")))
        self.assertEqual(len(py.prompts), 1, "no prompt for an invalidated key")

    def test_state_survives_a_restart_and_corruption_is_reported(self):
        ks = PyKeystore(self.vendor)
        client = BiopayClient.with_keystore(RP, ks, self.app_dir)
        cid = self.register(client)
        self.verifier.verify_payment(run(client.authorize(self.pay_challenge(cid, "o1"))))
        client = None
        gc.collect()
        client = BiopayClient.with_keystore(RP, ks, self.app_dir)
        self.assertEqual([c.credential_id for c in client.credentials()], [cid])
        self.assertEqual(self.verifier.verify_payment(run(client.authorize(self.pay_challenge(cid, "o2")))).counter, 2)
        with open(os.path.join(self.app_dir, f"biopay-keystore-{RP}.json"), "w") as f:
            f.write("{ not json")
        with self.assertRaises(BiopayError.Keystore) as e:
            BiopayClient.with_keystore(RP, ks, self.app_dir)
        self.assertIn("corrupt", e.exception.reason)

    def test_keystore_objects_are_released(self):
        ks = self.tee.as_keystore(PACKAGE, DIGEST)
        client = BiopayClient.with_keystore(RP, ks, self.app_dir)
        refs = [weakref.ref(client), weakref.ref(ks)]
        client = ks = None
        gc.collect()
        self.assertEqual([r() for r in refs], [None, None])


def stored_counter(app_dir):
    with open(os.path.join(app_dir, f"biopay-keystore-{RP}.json")) as f:
        creds = json.load(f)["credentials"]
    assert len(creds) == 1, creds
    return creds[0]["counter"]


async def eventually(what, cond):
    """Waits (bounded) until cond() holds."""
    async def poll():
        while not cond():
            await asyncio.sleep(0.005)
    try:
        await asyncio.wait_for(poll(), 10)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for: {what}") from None


class AsyncTest(unittest.IsolatedAsyncioTestCase):
    """The async API on asyncio: completion, cancellation during the prompt,
    two concurrent calls on one client, an exception after a delay."""

    def setUp(self):
        self.vendor = SimulatedVendor("Acme Devices", b"python async vendor")
        self.verifier = PaymentVerifier(RP, [])
        self.verifier.trust_android(trust(self.vendor))
        self.dir = tempfile.mkdtemp(prefix="biopay-py-async")
        self.app_dir = os.path.join(self.dir, "app")
        self.ks = PyKeystore(self.vendor)
        self.client = BiopayClient.with_keystore(RP, self.ks, self.app_dir)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    async def register(self):
        c = self.verifier.registration_challenge(b"account-7", [Modality.FINGERPRINT], SecurityLevel.TEE)
        return self.verifier.verify_platform_registration(await self.client.register(c, [Modality.FINGERPRINT])).credential_id

    def pay(self, cid, order):
        return self.verifier.payment_challenge(cid, Transaction(
            amount_minor=8800, currency="CNY", payee_id="merchant-0042",
            payee_name="Coffee Corner", order_id=order, memo=None,
        ))

    def hold_prompts(self):
        self.ks.gate = asyncio.Event()
        self.ks.prompt_shown = asyncio.Event()

    async def test_a_payment_completes_while_the_event_loop_stays_free(self):
        cid = await self.register()
        self.hold_prompts()
        paying = asyncio.create_task(self.client.authorize(self.pay(cid, "o1")))
        await self.ks.prompt_shown.wait()
        # The loop runs this coroutine while the prompt is up, and the
        # credentials answer (no lock held across the prompt).
        creds = self.client.credentials()
        self.assertEqual(len(creds), 1)
        self.assertFalse(paying.done())
        self.ks.gate.set()
        self.assertEqual(self.verifier.verify_payment(await paying).counter, 1)

    async def test_cancelling_the_task_during_the_prompt_uses_no_counter(self):
        cid = await self.register()
        self.hold_prompts()
        paying = asyncio.create_task(self.client.authorize(self.pay(cid, "o1")))
        await self.ks.prompt_shown.wait()
        self.assertEqual(stored_counter(self.app_dir), 1)
        paying.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await paying
        await eventually("the keystore's sign was cancelled", lambda: self.ks.prompts_cancelled == 1)
        self.assertEqual(stored_counter(self.app_dir), 0)
        self.ks.gate = None
        ok = self.verifier.verify_payment(await self.client.authorize(self.pay(cid, "o2")))
        self.assertEqual(ok.counter, 1)

    async def test_client_cancel_ends_the_call_with_cancelled(self):
        cid = await self.register()
        self.hold_prompts()
        paying = asyncio.create_task(self.client.authorize(self.pay(cid, "o1")))
        await self.ks.prompt_shown.wait()
        self.client.cancel()
        with self.assertRaises(BiopayError.Cancelled):
            await paying
        await eventually("the keystore's sign was cancelled", lambda: self.ks.prompts_cancelled == 1)
        self.assertEqual(stored_counter(self.app_dir), 0)

    async def test_two_concurrent_calls_are_serialised_and_both_complete(self):
        cid = await self.register()
        self.hold_prompts()
        a = asyncio.create_task(self.client.authorize(self.pay(cid, "o1")))
        await self.ks.prompt_shown.wait()
        b = asyncio.create_task(self.client.authorize(self.pay(cid, "o2")))
        # b's first poll runs (and waits for the client) before this returns.
        await asyncio.sleep(0)
        self.assertEqual(len(self.ks.prompts), 2, "the second call waits for the first")
        self.ks.gate.set()
        counters = sorted(self.verifier.verify_payment(s).counter for s in await asyncio.gather(a, b))
        self.assertEqual(counters, [1, 2])
        self.assertEqual(self.ks.most_prompts_up, 1, "never two prompts at once")

    async def test_an_exception_after_a_delay_arrives_typed(self):
        cid = await self.register()
        self.ks.sign_delay = 0.05
        self.ks.sign_error = BiopayError.NoMatch()
        with self.assertRaises(BiopayError.NoMatch):
            await self.client.authorize(self.pay(cid, "o1"))
        self.ks.sign_error = RuntimeError("sensor on fire")
        with self.assertRaises(BiopayError.Keystore) as e:
            await self.client.authorize(self.pay(cid, "o2"))
        self.assertIn("sensor on fire", e.exception.reason)
        self.ks.sign_delay = 0
        ok = self.verifier.verify_payment(await self.client.authorize(self.pay(cid, "o3")))
        self.assertEqual(ok.counter, 3, "failed prompts keep their counters used up")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
    print(f"python: {passed} passed, {len(result.failures) + len(result.errors)} failed")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
