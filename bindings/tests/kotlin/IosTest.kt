// The iOS flow from Kotlin (docs/PROTOCOL.md §13), the same cases as
// bindings/tests/python/test_ios.py: a Secure Enclave key
// (SimulatedSecureEnclaveKey) bound to an App Attest attestation
// (SimulatedAppAttestService), registered; payments below and above the
// assertion amount, the Apple amount cap, a replayed assertion counter (J4),
// an assertion over another statement (J2), another app's attestation (I6),
// an invalidated key (KeyInvalidated), deregistration.
// Compiled with BiopayTest.kt (shares check/expectThrows/RP); run as IosTestKt.
import org.biopay.*

const val APP_ID = "TEAM123456.com.example.pay"

class Phone(val service: SimulatedAppAttestService) {
    val seKey = SimulatedSecureEnclaveKey()
    val aaKey = service.generateKey()
    val credential = SecureEnclaveCredential(RP, java.security.SecureRandom().let { r -> ByteArray(32).also { r.nextBytes(it) } }, listOf(Modality.FACE), ByteArray(32))

    fun sign(request: SigningRequest): ByteArray = credential.finish(seKey.sign(request.data))

    fun register(challenge: ByteArray, appId: String? = null): ByteArray {
        val pk = seKey.publicKey()
        val h = credential.registrationClientDataHash(challenge, pk)
        val obj = if (appId == null) service.attestKey(aaKey, h) else service.dangerAttestKeyForApp(aaKey, h, appId)
        return sign(credential.prepareRegistration(challenge, pk, aaKey.keyId(), obj))
    }

    fun pay(challenge: ByteArray): ByteArray = sign(credential.preparePayment(challenge, Modality.FACE))

    fun assertion(statement: ByteArray): ByteArray = service.generateAssertion(aaKey, sha256(statement))
}

class IosWorld {
    val service = SimulatedAppAttestService(APP_ID, true)
    val verifier = PaymentVerifier(RP, listOf())
    val phone: Phone
    val id: ByteArray

    init {
        verifier.trustApple(AppleTrustConfig(listOf(APP_ID), true, listOf(service.rootCertPem())))
        phone = Phone(service)
        val c = verifier.registrationChallenge("account-ios".toByteArray(), listOf(Modality.FACE), SecurityLevel.TEE)
        val cred = verifier.verifyAppleRegistration(phone.register(c))
        check(cred.kind == "apple_app_attest" && cred.deviceModel == "apple-app-attest", "registered $cred")
        id = cred.credentialId
    }

    fun usd(order: String, amount: Long) = Transaction(amount, "USD", "merchant-0042", "Coffee Corner", order, null)

    fun statement(order: String, amount: Long): ByteArray = phone.pay(verifier.paymentChallenge(id, usd(order, amount)))
}

fun rejectedAt(step: String, block: () -> Unit): VerificationException.Rejected {
    val e = expectThrows<VerificationException.Rejected>("rejected at $step") { block() }
    check(e.stepCode == step, "expected $step, got ${e.stepCode}: ${e.reason}")
    return e
}

val iosTests = linkedMapOf<String, () -> Unit>(
    "small payment without, large payment with an App Attest assertion" to {
        val w = IosWorld()
        check(w.verifier.verifyPayment(w.statement("o1", 2000)).counter == 1L, "counter 1")
        val st = w.statement("o2", 5000)
        val e = rejectedAt("P17") { w.verifier.verifyPayment(st) }
        check(e.reason.contains("App Attest assertion"), e.reason)
        val ok = w.verifier.verifyPaymentWithAppAttest(st, w.phone.assertion(st))
        check(ok.transaction.amountMinor == 5000L, "approved $ok")
    },
    "the Apple amount cap applies even with an assertion (P17)" to {
        val w = IosWorld()
        val st = w.statement("o1", 10_001)
        rejectedAt("P17") { w.verifier.verifyPaymentWithAppAttest(st, w.phone.assertion(st)) }
    },
    "a replayed assertion counter is refused at J4" to {
        val w = IosWorld()
        val st = w.statement("o1", 5000)
        w.verifier.verifyPaymentWithAppAttest(st, w.phone.assertion(st))
        val st2 = w.statement("o2", 5000)
        val stale = w.service.dangerAssertionWithCounter(w.phone.aaKey, sha256(st2), 1u)
        rejectedAt("J4") { w.verifier.verifyPaymentWithAppAttest(st2, stale) }
    },
    "an assertion over another statement is refused at J2" to {
        val w = IosWorld()
        val st1 = w.statement("o1", 5000)
        val st2 = w.statement("o2", 5000)
        rejectedAt("J2") { w.verifier.verifyPaymentWithAppAttest(st2, w.phone.assertion(st1)) }
    },
    "another app's attestation is refused at I6" to {
        val w = IosWorld()
        val other = Phone(w.service)
        val c = w.verifier.registrationChallenge("account-ios".toByteArray(), listOf(Modality.FACE), SecurityLevel.TEE)
        rejectedAt("I6") { w.verifier.verifyAppleRegistration(other.register(c, "OTHERTEAM1.com.example.other")) }
    },
    "an invalidated Secure Enclave key surfaces as KeyInvalidated" to {
        val w = IosWorld()
        w.phone.seKey.invalidate()
        val req = w.phone.credential.preparePayment(w.verifier.paymentChallenge(w.id, w.usd("o1", 100)), Modality.FACE)
        expectThrows<BiopayException.KeyInvalidated>("invalidated") { w.phone.seKey.sign(req.data) }
    },
    "deregistration stops payments" to {
        val w = IosWorld()
        val d = w.phone.sign(w.phone.credential.prepareDeregistration())
        check(w.verifier.verifyDeregistration(d).contentEquals(w.id), "deregistered")
        expectThrows<VerificationException.InvalidRequest>("no challenge after deregistration") {
            w.verifier.paymentChallenge(w.id, w.usd("o9", 100))
        }
    },
)

fun main(args: Array<String>) {
    var passed = 0
    var failed = 0
    for ((name, body) in iosTests) {
        try {
            body()
            passed++
            println("ok     $name")
        } catch (e: Throwable) {
            failed++
            println("FAILED $name: $e")
        }
    }
    println("kotlin ios: $passed passed, $failed failed")
    if (failed > 0 || passed == 0) kotlin.system.exitProcess(1)
}
