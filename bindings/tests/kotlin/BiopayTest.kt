// The biopay SDK from Kotlin on the JVM: the full link on the simulated TEE,
// every error mapping, verification from Kotlin, and object lifetimes.
// Run by scripts/test-bindings.sh; prints "N passed, N failed".
import org.biopay.*
import java.nio.file.Files

const val RP = "pay.example.com"
const val MODEL = "acme-phone-x1"

class Failure(msg: String) : Exception(msg)

fun check(cond: Boolean, what: String) { if (!cond) throw Failure(what) }

inline fun <reified E : Throwable> expectThrows(what: String, block: () -> Unit): E {
    try { block() } catch (e: Throwable) {
        if (e is E) return e
        throw Failure("$what: expected ${E::class.simpleName}, got $e")
    }
    throw Failure("$what: expected ${E::class.simpleName}, nothing thrown")
}

class World : AutoCloseable {
    val vendor = SimulatedVendor("Acme Devices", "kotlin vendor".toByteArray())
    val verifier = PaymentVerifier(RP, listOf(vendor.deviceModel(MODEL, listOf(Modality.FINGERPRINT, Modality.FACE), SecurityLevel.TEE)))
    val dir = Files.createTempDirectory("biopay-kt")
    val tee = SimulatedTee.provision(vendor, MODEL, dir.resolve("phone").toString())
    val client = BiopayClient.withSimulatedTee(RP, tee)
    val credentialId: ByteArray

    init {
        tee.enrollFingerprint("right-thumb")
        tee.enrollFace()
        val challenge = verifier.registrationChallenge("account-7".toByteArray(), listOf(Modality.FINGERPRINT, Modality.FACE), SecurityLevel.TEE)
        tee.presentFinger("right-thumb")
        val attestation = client.register(challenge, listOf(Modality.FINGERPRINT, Modality.FACE))
        credentialId = verifier.verifyRegistration(attestation).credentialId
    }

    fun tx(order: String, amount: Long = 8800) = Transaction(amount, "CNY", "merchant-0042", "Coffee Corner", order, null)

    fun payChallenge(order: String, amount: Long = 8800) = verifier.paymentChallenge(credentialId, tx(order, amount))

    override fun close() {
        client.close(); tee.close(); verifier.close(); vendor.close()
        dir.toFile().deleteRecursively()
    }
}

val tests = linkedMapOf<String, () -> Unit>(
    "full link: register and pay 88.00 CNY" to {
        World().use { w ->
            val c = w.payChallenge("o1")
            w.tee.presentFinger("right-thumb")
            val approved = w.verifier.verifyPayment(w.client.authorize(c))
            check(approved.transaction.amountMinor == 8800L, "amount")
            check(approved.modality == Modality.FINGERPRINT, "modality")
            check(approved.counter == 1L, "counter")
            check(w.tee.lastDisplay()!!.contains("\nPay 88.00 CNY\n"), "trusted UI text: ${w.tee.lastDisplay()}")
            val creds = w.client.credentials()
            check(creds.size == 1 && creds[0].credentialId.contentEquals(w.credentialId) && creds[0].valid, "credentials")
        }
    },
    "replay is rejected at P9 by the verifier" to {
        World().use { w ->
            val c = w.payChallenge("o1")
            w.tee.presentFinger("right-thumb")
            val a = w.client.authorize(c)
            w.verifier.verifyPayment(a)
            val e = expectThrows<VerificationException.Rejected>("replay") { w.verifier.verifyPayment(a) }
            check(e.stepCode == "P9" && e.stepName == "challenge", "step: ${e.stepCode} ${e.stepName}")
        }
    },
    "tampered statement is rejected at its step" to {
        World().use { w ->
            val c = w.payChallenge("o1")
            w.tee.presentFinger("right-thumb")
            val a = w.client.authorize(c)
            a[a.size - 1] = (a[a.size - 1].toInt() xor 1).toByte()
            val e = expectThrows<VerificationException.Rejected>("bad signature") { w.verifier.verifyPayment(a) }
            check(e.stepCode == "P5", "step ${e.stepCode}")
        }
    },
    "face payment carries liveness; high value requires it" to {
        World().use { w ->
            val c = w.payChallenge("big", 500_000)
            w.tee.presentFinger("right-thumb")
            expectThrows<BiopayException.UserCanceled>("fingerprint refused for a face-only challenge") { w.client.authorize(c) }
            w.tee.presentFace()
            val ok = w.verifier.verifyPayment(w.client.authorize(c))
            check(ok.modality == Modality.FACE && ok.livenessPassed, "face with liveness")
        }
    },
    "error mapping: NoMatch, SpoofDetected, UserCanceled, TransactionDeclined" to {
        World().use { w ->
            val c = w.payChallenge("o1")
            w.tee.presentFinger("stranger")
            expectThrows<BiopayException.NoMatch>("unknown finger") { w.client.authorize(c) }
            w.tee.presentSpoof(Modality.FACE)
            expectThrows<BiopayException.SpoofDetected>("spoof") { w.client.authorize(c) }
            w.tee.presentCancel()
            expectThrows<BiopayException.UserCanceled>("cancel") { w.client.authorize(c) }
            w.tee.willConfirm(false)
            expectThrows<BiopayException.TransactionDeclined>("decline") { w.client.authorize(c) }
        }
    },
    "error mapping: LockedOut carries when it ends" to {
        World().use { w ->
            val c = w.payChallenge("o1")
            repeat(5) {
                w.tee.presentFinger("stranger")
                expectThrows<BiopayException.NoMatch>("failure ${it + 1}") { w.client.authorize(c) }
            }
            w.tee.presentFinger("right-thumb")
            val e = expectThrows<BiopayException.LockedOut>("lockout") { w.client.authorize(c) }
            val now = System.currentTimeMillis() / 1000
            val until = e.untilEpochSeconds ?: throw Failure("temporary lockout must say until when")
            check(until in (now + 1)..(now + 31), "until $until vs now $now")
            w.tee.passcodeReset()
            w.verifier.verifyPayment(w.client.authorize(c))
        }
    },
    "error mapping: InvalidChallenge, KeyInvalidated, NotEnrolled" to {
        World().use { w ->
            val e = expectThrows<BiopayException.InvalidChallenge>("garbage") { w.client.authorize(byteArrayOf(1, 2, 3)) }
            check(e.reason.isNotEmpty(), "reason")
            val d = w.client.deregister(w.credentialId)
            check(w.verifier.verifyDeregistration(d).contentEquals(w.credentialId), "deregistered")
            // The server still has the challenge format; the device no longer has the key.
            val other = World()
            other.use {
                val c = it.payChallenge("o1")
                it.client.deregister(it.credentialId)
                it.tee.presentFinger("right-thumb")
                expectThrows<BiopayException.KeyInvalidated>("deleted key") { it.client.authorize(c) }
                val reg = it.verifier.registrationChallenge("a".toByteArray(), listOf(Modality.FACE), SecurityLevel.TEE)
                val dir = Files.createTempDirectory("biopay-kt-bare")
                SimulatedTee.provision(it.vendor, MODEL, dir.resolve("p").toString()).use { bare ->
                    BiopayClient.withSimulatedTee(RP, bare).use { cl ->
                        expectThrows<BiopayException.NotEnrolled>("no face enrolled") { cl.register(reg, listOf(Modality.FACE)) }
                    }
                }
            }
        }
    },
    "verification errors name the step (wrong rp)" to {
        World().use { w ->
            val other = PaymentVerifier("shop.example.org", listOf(w.vendor.deviceModel(MODEL, listOf(Modality.FINGERPRINT), SecurityLevel.TEE)))
            other.use {
                val reg = it.registrationChallenge("x".toByteArray(), listOf(Modality.FINGERPRINT), SecurityLevel.TEE)
                expectThrows<BiopayException.InvalidChallenge>("client refuses another rp's challenge") { w.client.register(reg, listOf(Modality.FINGERPRINT)) }
            }
            val bad = expectThrows<VerificationException.InvalidRequest>("negative amount") { w.verifier.paymentChallenge(w.credentialId, w.tx("o", -1)) }
            check(bad.reason.contains("positive"), bad.reason)
        }
    },
    "revoked model is refused at P7" to {
        World().use { w ->
            val c = w.payChallenge("o1")
            w.tee.presentFinger("right-thumb")
            val a = w.client.authorize(c)
            check(w.verifier.revokeModel(MODEL), "revoke")
            val e = expectThrows<VerificationException.Rejected>("revoked") { w.verifier.verifyPayment(a) }
            check(e.stepCode == "P7", e.stepCode)
        }
    },
    "objects are closed and cannot be used afterwards" to {
        val w = World()
        w.close()
        expectThrows<IllegalStateException>("use after close") { w.client.credentials() }
        expectThrows<IllegalStateException>("use after close") { w.tee.lastDisplay() }
    },
    "the device survives a restart" to {
        World().use { w ->
            val path = w.dir.resolve("phone").toString()
            w.client.close(); w.tee.close()
            SimulatedTee.open(path).use { tee ->
                BiopayClient.withSimulatedTee(RP, tee).use { client ->
                    val c = w.payChallenge("o2")
                    tee.presentFinger("right-thumb")
                    check(w.verifier.verifyPayment(client.authorize(c)).counter == 1L, "counter after reopen")
                }
            }
        }
    },
)

fun main() {
    var passed = 0
    var failed = 0
    for ((name, body) in tests) {
        try {
            body()
            passed++
            println("ok     $name")
        } catch (e: Throwable) {
            failed++
            println("FAILED $name: $e")
        }
    }
    println("kotlin: $passed passed, $failed failed")
    if (failed > 0 || passed == 0) kotlin.system.exitProcess(1)
}
