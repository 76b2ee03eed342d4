// A Java (not Kotlin) program on the packaged jar: `java -cp dist/biopay-<v>.jar:
// dist/jna-*.jar:dist/kotlin-stdlib-*.jar:dist/kotlinx-coroutines-core-jvm-*.jar
// VerifyPayment.java`, no -Djna.library.path: the native library comes out of the
// jar. Registers a simulated device, pays, verifies the payment with
// PaymentVerifier, and checks that a replay is refused at P9. The device calls are
// Kotlin suspend functions; Java runs them with kotlinx.coroutines' runBlocking.
// Run by scripts/test-bindings.sh; prints "jvm package: ok".
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import kotlin.coroutines.Continuation;
import kotlin.coroutines.EmptyCoroutineContext;
import kotlinx.coroutines.BuildersKt;
import org.biopay.*;

public class VerifyPayment {
    static final String RP = "pay.example.com";

    /** A Kotlin suspend call, seen from Java: it takes the continuation last. */
    interface Suspend<T> {
        Object call(Continuation<? super T> cont) throws Exception;
    }

    /** Runs a suspend call to completion on this thread (a blocking Java caller). */
    static <T> T await(Suspend<T> body) throws InterruptedException {
        return BuildersKt.runBlocking(EmptyCoroutineContext.INSTANCE, (scope, cont) -> {
            try {
                return body.call(cont);
            } catch (Exception e) {  // thrown before the first suspension
                throw new RuntimeException(e);
            }
        });
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        Path dir = Files.createTempDirectory("biopay-jvm-package");
        SimulatedVendor vendor = new SimulatedVendor("Acme Devices", "jvm package vendor".getBytes());
        PaymentVerifier verifier = new PaymentVerifier(RP,
            List.of(vendor.deviceModel("acme-x1", List.of(Modality.FINGERPRINT), SecurityLevel.TEE)));
        SimulatedTee tee = SimulatedTee.Companion.provision(vendor, "acme-x1", dir.resolve("phone").toString());
        tee.enrollFingerprint("right-thumb");
        BiopayClient client = BiopayClient.Companion.withSimulatedTee(RP, tee);

        byte[] reg = verifier.registrationChallenge("account-1".getBytes(), List.of(Modality.FINGERPRINT), SecurityLevel.TEE);
        tee.presentFinger("right-thumb");
        byte[] attestation = VerifyPayment.<byte[]>await(cont -> client.register(reg, List.of(Modality.FINGERPRINT), cont));
        RegisteredCredential credential = verifier.verifyRegistration(attestation);

        byte[] challenge = verifier.paymentChallenge(credential.getCredentialId(),
            new Transaction(1250L, "EUR", "m-1", "Bakery", "order-1", null));
        tee.presentFinger("right-thumb");
        byte[] assertion = VerifyPayment.<byte[]>await(cont -> client.authorize(challenge, cont));
        ApprovedPayment approved = verifier.verifyPayment(assertion);
        check(approved.getTransaction().getAmountMinor() == 1250L, "amount");
        check(approved.getCounter() == 1L, "counter");
        try {
            verifier.verifyPayment(assertion);
            throw new AssertionError("a replayed payment was accepted");
        } catch (VerificationException.Rejected e) {
            check(e.getStepCode().equals("P9"), "replay refused at " + e.getStepCode());
        }
        String loadedFrom = System.getProperty("jna.library.path");
        check(loadedFrom == null, "no jna.library.path: the library came from the jar");
        client.close(); tee.close(); verifier.close(); vendor.close();
        System.out.println("jvm package: ok");
    }
}
