// Overhead of the Kotlin bindings: authorize and verify through Kotlin versus
// the same calls in Rust (native_flow_timings), interleaved in one process.
// Run by scripts/bench-bindings.sh; prints the ratios for docs/PERFORMANCE.md.
import kotlinx.coroutines.runBlocking
import org.biopay.*
import java.nio.file.Files

const val BATCH = 16

fun kotlinFlow(iterations: Int): Triple<Long, Long, Long> = runBlocking {
    val dir = Files.createTempDirectory("biopay-bench-kt")
    val vendor = SimulatedVendor("Bench Devices", "bench vendor".toByteArray())
    val verifier = PaymentVerifier("pay.example.com", listOf(vendor.deviceModel("bench-x1", listOf(Modality.FINGERPRINT), SecurityLevel.TEE)))
    val tee = SimulatedTee.provision(vendor, "bench-x1", dir.resolve("d").toString())
    val client = BiopayClient.withSimulatedTee("pay.example.com", tee)
    tee.enrollFingerprint("right-thumb")
    val reg = verifier.registrationChallenge("bench-account".toByteArray(), listOf(Modality.FINGERPRINT), SecurityLevel.TEE)
    tee.presentFinger("right-thumb")
    val id = verifier.verifyRegistration(client.register(reg, listOf(Modality.FINGERPRINT))).credentialId
    var authorize = 0L
    var verify = 0L
    for (i in 0 until iterations) {
        val c = verifier.paymentChallenge(id, Transaction(8800, "CNY", "merchant-0042", "Coffee Corner", "bench-$i", null))
        tee.presentFinger("right-thumb")
        val t0 = System.nanoTime()
        val a = client.authorize(c)
        val t1 = System.nanoTime()
        verifier.verifyPayment(a)
        val t2 = System.nanoTime()
        authorize += t1 - t0
        verify += t2 - t1
    }
    // The back-end path: the same number of payments verified BATCH at a
    // time through verifyPayments (one FFI crossing per batch).
    var verifyBatched = 0L
    for (b in 0 until iterations / BATCH) {
        val statements = (0 until BATCH).map { j ->
            val c = verifier.paymentChallenge(id, Transaction(8800, "CNY", "merchant-0042", "Coffee Corner", "batch-$b-$j", null))
            tee.presentFinger("right-thumb")
            client.authorize(c)
        }
        val t0 = System.nanoTime()
        val outcomes = verifier.verifyPayments(statements)
        verifyBatched += System.nanoTime() - t0
        check(outcomes.size == BATCH && outcomes.all { it.approved != null }) { "a batched payment was refused: $outcomes" }
    }
    client.close(); tee.close(); verifier.close(); vendor.close()
    dir.toFile().deleteRecursively()
    Triple(authorize, verify, verifyBatched)
}

fun main(args: Array<String>) {
    val iterations = args.getOrNull(0)?.toInt() ?: 300
    val rounds = args.getOrNull(1)?.toInt() ?: 5
    kotlinFlow(50) // JIT warm-up
    var (ka, kv, na, nv) = listOf(0L, 0L, 0L, 0L)
    var kb = 0L
    repeat(rounds) {
        val (a, v, b) = kotlinFlow(iterations)
        ka += a; kv += v; kb += b
        val dir = Files.createTempDirectory("biopay-bench-native")
        val n = nativeFlowTimings(iterations.toUInt(), dir.resolve("d").toString())
        na += n.authorizeNanos; nv += n.verifyNanos
        dir.toFile().deleteRecursively()
    }
    val total = (iterations * rounds).toDouble()
    println("payments per side: ${iterations * rounds} (rounds of $iterations, interleaved)")
    println("authorize: kotlin %.1f us, rust %.1f us, kotlin/rust time ratio %.3f".format(ka / total / 1000, na / total / 1000, ka.toDouble() / na))
    println("verify:    kotlin %.1f us, rust %.1f us, kotlin/rust time ratio %.3f".format(kv / total / 1000, nv / total / 1000, kv.toDouble() / nv))
    val batched = ((iterations / BATCH) * BATCH * rounds).toDouble()
    println("verify in batches of %d (verifyPayments): kotlin %.1f us per payment, rust %.1f us, kotlin/rust time ratio %.3f".format(
        BATCH, kb / batched / 1000, nv / total / 1000, (kb / batched) / (nv / total)))
}
