// The biopay SDK from Kotlin on the JVM: the full link on the simulated TEE,
// every error mapping, verification from Kotlin, and object lifetimes; then the
// platform-keystore path (PlatformKeystore) on SimulatedTee.asKeystore and on a
// Kotlin keystore over java.security (JcaKeystore).
// Run by scripts/test-bindings.sh; prints "N passed, N failed".
import kotlinx.coroutines.*
import org.biopay.*
import java.math.BigInteger
import java.nio.file.Files
import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.Signature
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec

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
        val attestation = runBlocking { client.register(challenge, listOf(Modality.FINGERPRINT, Modality.FACE)) }
        credentialId = verifier.verifyRegistration(attestation).credentialId
    }

    fun tx(order: String, amount: Long = 8800) = Transaction(amount, "CNY", "merchant-0042", "Coffee Corner", order, null)

    fun payChallenge(order: String, amount: Long = 8800) = verifier.paymentChallenge(credentialId, tx(order, amount))

    override fun close() {
        client.close(); tee.close(); verifier.close(); vendor.close()
        dir.toFile().deleteRecursively()
    }
}

// --- the platform-keystore path -------------------------------------------

const val PACKAGE = "com.example.pay"
val DIGEST = ByteArray(32) { 0xAB.toByte() }

fun fixed32(v: BigInteger): ByteArray {
    val b = v.toByteArray()
    return if (b.size >= 32) b.copyOfRange(b.size - 32, b.size) else ByteArray(32 - b.size) + b
}

/**
 * A test double of Android Keystore on java.security: EC secp256r1 keys in
 * memory by alias, SHA256withECDSA (DER) signatures, and an attestation
 * chain from the simulated vendor's KeyMint test-double CA. `signError` is
 * thrown by the next `sign` (as BiometricPrompt's failures would be), after
 * `signDelayMs`. While `gate` is set, `sign` suspends on it (the user looks
 * at the prompt); `promptShown` completes when a prompt is up.
 */
class JcaKeystore(private val vendor: SimulatedVendor) : PlatformKeystore {
    val keys = java.util.concurrent.ConcurrentHashMap<String, KeyPair>()
    val invalidated: MutableSet<String> = java.util.concurrent.ConcurrentHashMap.newKeySet()
    val prompts: MutableList<String> = java.util.Collections.synchronizedList(ArrayList())
    @Volatile var signError: Exception? = null
    @Volatile var signDelayMs = 0L
    @Volatile var gate: CompletableDeferred<Unit>? = null
    @Volatile var promptShown = CompletableDeferred<Unit>()
    val promptsUp = java.util.concurrent.atomic.AtomicInteger()
    val mostPromptsUp = java.util.concurrent.atomic.AtomicInteger()
    val promptsCancelled = java.util.concurrent.atomic.AtomicInteger()

    override suspend fun generateKey(alias: String, attestationChallenge: ByteArray, requireStrongBox: Boolean): GeneratedKey {
        if (requireStrongBox) throw BiopayException.Keystore("no StrongBox in this JVM")
        val gen = KeyPairGenerator.getInstance("EC")
        gen.initialize(ECGenParameterSpec("secp256r1"))
        val pair = gen.generateKeyPair()
        val w = (pair.public as ECPublicKey).w
        val sec1 = byteArrayOf(4) + fixed32(w.affineX) + fixed32(w.affineY)
        keys[alias] = pair
        val chain = vendor.certifyKeystoreKey(sec1, attestationChallenge, PACKAGE, DIGEST, false)
        return GeneratedKey(sec1, chain, false)
    }

    override suspend fun sign(alias: String, data: ByteArray, promptText: String): ByteArray {
        prompts.add(promptText)
        val up = promptsUp.incrementAndGet()
        mostPromptsUp.accumulateAndGet(up) { a, b -> maxOf(a, b) }
        try {
            promptShown.complete(Unit)
            gate?.await()
            if (signDelayMs > 0) delay(signDelayMs)
        } catch (e: CancellationException) {
            promptsCancelled.incrementAndGet()  // a real keystore dismisses the prompt here
            throw e
        } finally {
            promptsUp.decrementAndGet()
        }
        signError?.let { signError = null; throw it }
        if (alias in invalidated) throw BiopayException.KeyInvalidated()
        val pair = keys[alias] ?: throw BiopayException.KeyInvalidated()
        val s = Signature.getInstance("SHA256withECDSA")
        s.initSign(pair.private)
        s.update(data)
        return s.sign()
    }

    override fun deleteKey(alias: String) { keys.remove(alias); invalidated.remove(alias) }

    override fun keyState(alias: String): KeyState = when {
        !keys.containsKey(alias) -> KeyState.MISSING
        alias in invalidated -> KeyState.INVALIDATED
        else -> KeyState.VALID
    }
}

/** Closes a Rust-backed keystore (PlatformKeystoreImpl) after `block`. */
inline fun <R> PlatformKeystore.closing(block: (PlatformKeystore) -> R): R =
    try { block(this) } finally { (this as? AutoCloseable)?.close() }

/** A verifier trusting the vendor's simulated KeyMint roots, and an app's state directory. */
class KeystoreWorld : AutoCloseable {
    val vendor = SimulatedVendor("Acme Devices", "kotlin keystore vendor".toByteArray())
    val verifier = PaymentVerifier(RP, listOf())
    val dir = Files.createTempDirectory("biopay-kt-ks")
    val tee = SimulatedTee.provision(vendor, MODEL, dir.resolve("phone").toString())
    val appDir = dir.resolve("app").toString()

    init {
        verifier.trustAndroid(AndroidTrustConfig(listOf(vendor.androidTrustRoot()), false, PACKAGE, listOf(DIGEST), 202401L, false))
        tee.enrollFingerprint("right-thumb")
    }

    suspend fun register(client: BiopayClient, beforeSign: () -> Unit = {}): ByteArray {
        val challenge = verifier.registrationChallenge("account-7".toByteArray(), listOf(Modality.FINGERPRINT), SecurityLevel.TEE)
        beforeSign()
        val reg = verifier.verifyPlatformRegistration(client.register(challenge, listOf(Modality.FINGERPRINT)))
        check(reg.kind == "platform_keystore", "kind ${reg.kind}")
        return reg.credentialId
    }

    fun payChallenge(id: ByteArray, order: String) =
        verifier.paymentChallenge(id, Transaction(8800, "CNY", "merchant-0042", "Coffee Corner", order, null))

    override fun close() {
        tee.close(); verifier.close(); vendor.close()
        dir.toFile().deleteRecursively()
    }
}

val keystoreTests = linkedMapOf<String, suspend () -> Unit>(
    "keystore: full link on SimulatedTee.asKeystore" to suspend {
        KeystoreWorld().use { w ->
            w.tee.asKeystore(PACKAGE, DIGEST).closing { ks ->
                BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                    val id = w.register(client) { w.tee.presentFinger("right-thumb") }
                    check(w.tee.lastDisplay() == "Register this device for payments at $RP", "prompt ${w.tee.lastDisplay()}")
                    w.tee.presentFinger("right-thumb")
                    val ok = w.verifier.verifyPayment(client.authorize(w.payChallenge(id, "o1")))
                    check(ok.counter == 1L && ok.modality == Modality.FINGERPRINT && !ok.livenessPassed, "approved $ok")
                    check(w.tee.lastDisplay()!!.contains("\nPay 88.00 CNY\n"), "prompt ${w.tee.lastDisplay()}")
                    w.tee.presentFinger("right-thumb")
                    val d = client.deregister(id)
                    check(w.verifier.verifyDeregistration(d).contentEquals(id), "deregistered")
                    check(client.credentials().isEmpty(), "no credential left")
                }
            }
        }
    },
    "keystore: full link with a Kotlin JcaKeystore" to suspend {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                val ok = w.verifier.verifyPayment(client.authorize(w.payChallenge(id, "o1")))
                check(ok.counter == 1L, "counter")
                check(ks.prompts.size == 2 && ks.prompts[1].startsWith("$RP\nPay 88.00 CNY\nTo: Coffee Corner"), "prompts ${ks.prompts}")
                val creds = client.credentials()
                check(creds.size == 1 && creds[0].valid && creds[0].credentialId.contentEquals(id), "credentials")
                val d = client.deregister(id)
                check(w.verifier.verifyDeregistration(d).contentEquals(id), "deregistered")
                check(ks.keys.isEmpty(), "the key was deleted")
            }
        }
    },
    "keystore: BiopayException thrown in Kotlin keeps its variant" to suspend {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                ks.signError = BiopayException.UserCanceled()
                expectThrows<BiopayException.UserCanceled>("canceled prompt") { client.authorize(w.payChallenge(id, "o1")) }
                ks.signError = BiopayException.LockedOut(1_900_000_000L)
                val e = expectThrows<BiopayException.LockedOut>("lockout") { client.authorize(w.payChallenge(id, "o2")) }
                check(e.untilEpochSeconds == 1_900_000_000L, "until ${e.untilEpochSeconds}")
                ks.signError = BiopayException.NoMatch()
                expectThrows<BiopayException.NoMatch>("no match") { client.authorize(w.payChallenge(id, "o3")) }
                // Three failed prompts used up three counter values.
                check(w.verifier.verifyPayment(client.authorize(w.payChallenge(id, "o4"))).counter == 4L, "counter 4")
            }
        }
    },
    "keystore: any other exception arrives as Keystore" to suspend {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                ks.signError = IllegalStateException("sensor on fire")
                val e = expectThrows<BiopayException.Keystore>("foreign exception") { client.authorize(w.payChallenge(id, "o1")) }
                check(e.reason.contains("IllegalStateException") && e.reason.contains("sensor on fire"), "reason ${e.reason}")
                check(!e.reason.contains("\n"), "one line: ${e.reason}")
            }
        }
    },
    "keystore: an invalidated key is KeyInvalidated" to suspend {
        KeystoreWorld().use { w ->
            w.tee.asKeystore(PACKAGE, DIGEST).closing { ks ->
                BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                    val id = w.register(client) { w.tee.presentFinger("right-thumb") }
                    w.tee.enrollFingerprint("left-thumb")
                    check(!client.credentials()[0].valid, "credential reported invalid")
                    w.tee.presentFinger("right-thumb")
                    expectThrows<BiopayException.KeyInvalidated>("enrollment changed") { client.authorize(w.payChallenge(id, "o1")) }
                }
            }
            val jca = JcaKeystore(w.vendor)
            BiopayClient.withKeystore("shop.example.com", jca, w.appDir).use { client ->
                val verifier = PaymentVerifier("shop.example.com", listOf())
                verifier.use { v ->
                    v.trustAndroid(AndroidTrustConfig(listOf(w.vendor.androidTrustRoot()), false, PACKAGE, listOf(DIGEST), 0L, false))
                    val c = v.registrationChallenge("a".toByteArray(), listOf(Modality.FINGERPRINT), SecurityLevel.TEE)
                    val id = v.verifyPlatformRegistration(client.register(c, listOf(Modality.FINGERPRINT))).credentialId
                    jca.invalidated.addAll(jca.keys.keys)
                    val pay = v.paymentChallenge(id, Transaction(100, "CNY", "m", "M", "o", null))
                    expectThrows<BiopayException.KeyInvalidated>("invalidated JCA key") { client.authorize(pay) }
                    check(jca.prompts.size == 1, "no prompt for an invalidated key")
                }
            }
        }
    },
    "keystore: credentials and counters survive a restart" to suspend {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            val id = BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                w.verifier.verifyPayment(client.authorize(w.payChallenge(id, "o1")))
                id
            }
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                check(client.credentials().map { it.credentialId.toList() } == listOf(id.toList()), "reloaded")
                check(w.verifier.verifyPayment(client.authorize(w.payChallenge(id, "o2"))).counter == 2L, "counter 2")
            }
            java.io.File(w.appDir, "biopay-keystore-$RP.json").writeText("{ not json")
            val e = expectThrows<BiopayException.Keystore>("corrupt state") { BiopayClient.withKeystore(RP, ks, w.appDir) }
            check(e.reason.contains("corrupt"), e.reason)
        }
    },
)

val tests = linkedMapOf<String, suspend () -> Unit>(
    "full link: register and pay 88.00 CNY" to suspend {
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
    "replay is rejected at P9 by the verifier" to suspend {
        World().use { w ->
            val c = w.payChallenge("o1")
            w.tee.presentFinger("right-thumb")
            val a = w.client.authorize(c)
            w.verifier.verifyPayment(a)
            val e = expectThrows<VerificationException.Rejected>("replay") { w.verifier.verifyPayment(a) }
            check(e.stepCode == "P9" && e.stepName == "challenge", "step: ${e.stepCode} ${e.stepName}")
        }
    },
    "verifyPayments decides each statement as verifyPayment would, in order" to suspend {
        World().use { w ->
            val statements = listOf("b1", "b2").map { order ->
                val c = w.payChallenge(order)
                w.tee.presentFinger("right-thumb")
                w.client.authorize(c)
            }
            val out = w.verifier.verifyPayments(listOf(statements[0], ByteArray(40) { 0x42 }, statements[1], statements[0]))
            check(out.map { it.approved?.counter } == listOf(1L, null, 2L, null), "approved: $out")
            check(out.map { it.rejection?.stepCode } == listOf(null, "P1", null, "P9"), "rejections: $out")
            check(w.verifier.verifyPayments(listOf()).isEmpty(), "empty batch")
        }
    },
    "tampered statement is rejected at its step" to suspend {
        World().use { w ->
            val c = w.payChallenge("o1")
            w.tee.presentFinger("right-thumb")
            val a = w.client.authorize(c)
            a[a.size - 1] = (a[a.size - 1].toInt() xor 1).toByte()
            val e = expectThrows<VerificationException.Rejected>("bad signature") { w.verifier.verifyPayment(a) }
            check(e.stepCode == "P5", "step ${e.stepCode}")
        }
    },
    "face payment carries liveness; high value requires it" to suspend {
        World().use { w ->
            val c = w.payChallenge("big", 500_000)
            w.tee.presentFinger("right-thumb")
            expectThrows<BiopayException.UserCanceled>("fingerprint refused for a face-only challenge") { w.client.authorize(c) }
            w.tee.presentFace()
            val ok = w.verifier.verifyPayment(w.client.authorize(c))
            check(ok.modality == Modality.FACE && ok.livenessPassed, "face with liveness")
        }
    },
    "error mapping: NoMatch, SpoofDetected, UserCanceled, TransactionDeclined" to suspend {
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
    "error mapping: LockedOut carries when it ends" to suspend {
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
    "error mapping: InvalidChallenge, KeyInvalidated, NotEnrolled" to suspend {
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
    "verification errors name the step (wrong rp)" to suspend {
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
    "revoked model is refused at P7" to suspend {
        World().use { w ->
            val c = w.payChallenge("o1")
            w.tee.presentFinger("right-thumb")
            val a = w.client.authorize(c)
            check(w.verifier.revokeModel(MODEL), "revoke")
            val e = expectThrows<VerificationException.Rejected>("revoked") { w.verifier.verifyPayment(a) }
            check(e.stepCode == "P7", e.stepCode)
        }
    },
    "objects are closed and cannot be used afterwards" to suspend {
        val w = World()
        w.close()
        expectThrows<IllegalStateException>("use after close") { w.client.credentials() }
        expectThrows<IllegalStateException>("use after close") { w.tee.lastDisplay() }
    },
    "the device survives a restart" to suspend {
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

// --- the async API: suspend calls, cancellation, serialisation ------------

/** The counter stored for the only credential in the app's state file. */
fun storedCounter(w: KeystoreWorld): Long {
    val text = java.io.File(w.appDir, "biopay-keystore-$RP.json").readText()
    val m = Regex("\"counter\":\\s*(\\d+)").findAll(text).toList()
    check(m.size == 1, "one credential in $text")
    return m[0].groupValues[1].toLong()
}

/** Waits (bounded) until `cond` holds. */
suspend fun eventually(what: String, cond: () -> Boolean) {
    try { withTimeout(10_000) { while (!cond()) delay(5) } }
    catch (e: TimeoutCancellationException) { throw Failure("timed out waiting for: $what") }
}

/** A test body that launches coroutines (in the runBlocking loop of `main`). */
fun scoped(body: suspend CoroutineScope.() -> Unit): suspend () -> Unit = { coroutineScope(body) }

val asyncTests = linkedMapOf<String, suspend () -> Unit>(
    "async: a payment completes while the calling thread stays free during the prompt" to scoped {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                val caller = Thread.currentThread()
                ks.gate = CompletableDeferred()
                ks.promptShown = CompletableDeferred()
                val paying = async { client.authorize(w.payChallenge(id, "o1")) }
                // This runBlocking loop is single-threaded, like Android's main
                // dispatcher: it keeps running coroutines while the prompt is up.
                ks.promptShown.await()
                check(Thread.currentThread() == caller, "same thread")
                val creds = client.credentials()  // the main-thread deadlock of #15 item 4
                check(creds.size == 1 && creds[0].valid, "credentials during the prompt")
                check(!paying.isCompleted, "still waiting for the user")
                ks.gate!!.complete(Unit)
                check(w.verifier.verifyPayment(paying.await()).counter == 1L, "counter 1")
            }
        }
    },
    "async: cancelling the coroutine during the prompt dismisses it, uses no counter, and the next call works" to scoped {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                ks.gate = CompletableDeferred()
                ks.promptShown = CompletableDeferred()
                val paying = launch { client.authorize(w.payChallenge(id, "o1")) }
                ks.promptShown.await()
                check(storedCounter(w) == 1L, "counter stored before the prompt")
                paying.cancelAndJoin()
                check(paying.isCancelled, "cancelled")
                eventually("the keystore's sign was cancelled") { ks.promptsCancelled.get() == 1 }
                check(storedCounter(w) == 0L, "counter given back: ${storedCounter(w)}")
                ks.gate = null
                val ok = w.verifier.verifyPayment(client.authorize(w.payChallenge(id, "o2")))
                check(ok.counter == 1L, "next payment is counter 1, got ${ok.counter}")
            }
        }
    },
    "async: client.cancel() ends the call in progress with Cancelled" to scoped {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                ks.gate = CompletableDeferred()
                ks.promptShown = CompletableDeferred()
                val paying = async { runCatching { client.authorize(w.payChallenge(id, "o1")) } }
                ks.promptShown.await()
                client.cancel()
                val r = paying.await()
                check(r.exceptionOrNull() is BiopayException.Cancelled, "got $r")
                eventually("the keystore's sign was cancelled") { ks.promptsCancelled.get() == 1 }
                check(storedCounter(w) == 0L, "no counter used")
                ks.gate = null
                check(w.verifier.verifyPayment(client.authorize(w.payChallenge(id, "o2"))).counter == 1L, "next call")
            }
        }
    },
    "async: two concurrent calls on one client are serialised and both complete" to scoped {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                ks.gate = CompletableDeferred()
                ks.promptShown = CompletableDeferred()
                val a = async(Dispatchers.Default) { client.authorize(w.payChallenge(id, "o1")) }
                ks.promptShown.await()
                val bCalled = CompletableDeferred<Unit>()
                val b = async(Dispatchers.Default) { val c = w.payChallenge(id, "o2"); bCalled.complete(Unit); client.authorize(c) }
                bCalled.await()
                check(ks.prompts.size == 2, "the second call waits: ${ks.prompts.size - 1} payment prompts")
                ks.gate!!.complete(Unit)
                val counters = listOf(a.await(), b.await()).map { w.verifier.verifyPayment(it).counter }.sorted()
                check(counters == listOf(1L, 2L), "counters $counters")
                check(ks.mostPromptsUp.get() == 1, "never two prompts at once")
            }
        }
    },
    "async: an exception thrown by the keystore after a delay arrives typed" to scoped {
        KeystoreWorld().use { w ->
            val ks = JcaKeystore(w.vendor)
            BiopayClient.withKeystore(RP, ks, w.appDir).use { client ->
                val id = w.register(client)
                ks.signDelayMs = 50
                ks.signError = BiopayException.NoMatch()
                expectThrows<BiopayException.NoMatch>("no match after a delay") { client.authorize(w.payChallenge(id, "o1")) }
                ks.signError = IllegalStateException("sensor on fire")
                val e = expectThrows<BiopayException.Keystore>("foreign exception after a delay") { client.authorize(w.payChallenge(id, "o2")) }
                check(e.reason.contains("IllegalStateException") && e.reason.contains("sensor on fire") && !e.reason.contains("\n"), e.reason)
                // Failed prompts keep their counters used up; the next call works.
                ks.signDelayMs = 0
                check(w.verifier.verifyPayment(client.authorize(w.payChallenge(id, "o3"))).counter == 3L, "counter 3")
            }
        }
    },
)

fun main() {
    var passed = 0
    var failed = 0
    for ((name, body) in tests + keystoreTests + asyncTests) {
        try {
            runBlocking { withTimeout(60_000) { body() } }
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
