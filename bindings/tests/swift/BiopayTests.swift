// The biopay SDK from Swift: the same suite as bindings/tests/kotlin/BiopayTest.kt
// (KeystoreTests: the platform-keystore path on SimulatedTee.asKeystore and on a
// CryptoKit keystore double).
// Needs a Swift toolchain (macOS or Linux); see bindings/swift/README.md.
// On the CI machine (no Swift) it is only syntax-checked with tree-sitter-swift.
import CryptoKit
import Foundation
import XCTest
@testable import Biopay

let rp = "pay.example.com"
let model = "acme-phone-x1"

final class World {
    let vendor: SimulatedVendor
    let verifier: PaymentVerifier
    let dir: URL
    let tee: SimulatedTee
    let client: BiopayClient
    let credentialId: Data

    init() async throws {
        vendor = try SimulatedVendor(name: "Acme Devices", seed: Data("swift vendor".utf8))
        verifier = try PaymentVerifier(
            rpId: rp,
            models: [vendor.deviceModel(modelId: model, modalities: [.fingerprint, .face], securityLevel: .tee)]
        )
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("biopay-swift-\(UUID().uuidString)")
        tee = try SimulatedTee.provision(vendor: vendor, modelId: model, stateDir: dir.appendingPathComponent("phone").path)
        client = try BiopayClient.withSimulatedTee(rpId: rp, tee: tee)
        try tee.enrollFingerprint(label: "right-thumb")
        try tee.enrollFace()
        let challenge = try verifier.registrationChallenge(
            accountHandle: Data("account-7".utf8), modalities: [.fingerprint, .face], required: .tee)
        tee.presentFinger(label: "right-thumb")
        let attestation = try await client.register(challenge: challenge, modalities: [.fingerprint, .face])
        credentialId = try verifier.verifyRegistration(statement: attestation).credentialId
    }

    func tx(_ order: String, _ amount: Int64 = 8800) -> Transaction {
        Transaction(amountMinor: amount, currency: "CNY", payeeId: "merchant-0042",
                    payeeName: "Coffee Corner", orderId: order, memo: nil)
    }

    func payChallenge(_ order: String, _ amount: Int64 = 8800) throws -> Data {
        try verifier.paymentChallenge(credentialId: credentialId, transaction: tx(order, amount))
    }

    deinit { try? FileManager.default.removeItem(at: dir) }
}

final class BiopayTests: XCTestCase {
    func testFullLink() async throws {
        let w = try await World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "right-thumb")
        let approved = try w.verifier.verifyPayment(statement: try await w.client.authorize(challenge: c))
        XCTAssertEqual(approved.transaction.amountMinor, 8800)
        XCTAssertEqual(approved.modality, .fingerprint)
        XCTAssertEqual(approved.counter, 1)
        XCTAssertTrue(w.tee.lastDisplay()?.contains("\nPay 88.00 CNY\n") ?? false)
        let creds = try w.client.credentials()
        XCTAssertEqual(creds.map { $0.credentialId }, [w.credentialId])
        XCTAssertTrue(creds[0].valid)
    }

    func testReplayRejectedAtP9() async throws {
        let w = try await World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "right-thumb")
        let a = try await w.client.authorize(challenge: c)
        _ = try w.verifier.verifyPayment(statement: a)
        XCTAssertThrowsError(try w.verifier.verifyPayment(statement: a)) { error in
            guard case VerificationError.Rejected(let code, let name, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "P9")
            XCTAssertEqual(name, "challenge")
        }
    }

    func testTamperedSignatureRejectedAtP5() async throws {
        let w = try await World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "right-thumb")
        var a = try await w.client.authorize(challenge: c)
        a[a.count - 1] ^= 1
        XCTAssertThrowsError(try w.verifier.verifyPayment(statement: a)) { error in
            guard case VerificationError.Rejected(let code, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "P5")
        }
    }

    func testHighValueNeedsALiveFace() async throws {
        let w = try await World()
        let c = try w.payChallenge("big", 500_000)
        w.tee.presentFinger(label: "right-thumb")
        await assertThrowsAsync(try await w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .UserCanceled) }
        w.tee.presentFace()
        let ok = try w.verifier.verifyPayment(statement: try await w.client.authorize(challenge: c))
        XCTAssertEqual(ok.modality, .face)
        XCTAssertTrue(ok.livenessPassed)
    }

    func testErrorMapping() async throws {
        let w = try await World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "stranger")
        await assertThrowsAsync(try await w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .NoMatch) }
        w.tee.presentSpoof(modality: .face)
        await assertThrowsAsync(try await w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .SpoofDetected) }
        w.tee.presentCancel()
        await assertThrowsAsync(try await w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .UserCanceled) }
        w.tee.willConfirm(confirm: false)
        await assertThrowsAsync(try await w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .TransactionDeclined) }
        await assertThrowsAsync(try await w.client.authorize(challenge: Data([1, 2]))) { error in
            guard case BiopayError.InvalidChallenge(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertFalse(reason.isEmpty)
        }
    }

    func testLockoutSaysUntilWhen() async throws {
        let w = try await World()
        let c = try w.payChallenge("o1")
        for _ in 0..<5 {
            w.tee.presentFinger(label: "stranger")
            await assertThrowsAsync(try await w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .NoMatch) }
        }
        w.tee.presentFinger(label: "right-thumb")
        await assertThrowsAsync(try await w.client.authorize(challenge: c)) { error in
            guard case BiopayError.LockedOut(let until) = error, let until else { return XCTFail("\(error)") }
            let now = Int64(Date().timeIntervalSince1970)
            XCTAssertTrue(until > now && until <= now + 31)
        }
        try w.tee.passcodeReset()
        _ = try w.verifier.verifyPayment(statement: try await w.client.authorize(challenge: c))
    }

    func testDeletedKeyAndNotEnrolled() async throws {
        let w = try await World()
        let c = try w.payChallenge("o1")
        let d = try await w.client.deregister(credentialId: w.credentialId)
        XCTAssertEqual(try w.verifier.verifyDeregistration(statement: d), w.credentialId)
        w.tee.presentFinger(label: "right-thumb")
        await assertThrowsAsync(try await w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .KeyInvalidated) }
        let bare = try SimulatedTee.provision(vendor: w.vendor, modelId: model, stateDir: w.dir.appendingPathComponent("bare").path)
        let client = try BiopayClient.withSimulatedTee(rpId: rp, tee: bare)
        let reg = try w.verifier.registrationChallenge(accountHandle: Data("a".utf8), modalities: [.face], required: .tee)
        await assertThrowsAsync(try await client.register(challenge: reg, modalities: [.face])) { XCTAssertEqual($0 as? BiopayError, .NotEnrolled) }
    }

    func testRevokedModelRefusedAtP7() async throws {
        let w = try await World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "right-thumb")
        let a = try await w.client.authorize(challenge: c)
        XCTAssertTrue(w.verifier.revokeModel(modelId: model))
        XCTAssertThrowsError(try w.verifier.verifyPayment(statement: a)) { error in
            guard case VerificationError.Rejected(let code, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "P7")
        }
    }

    func testObjectsAreReleased() async throws {
        var w: World? = try await World()
        weak var client = w?.client
        w = nil
        XCTAssertNil(client, "the client object was not released")
    }

    func testDeviceSurvivesRestart() async throws {
        let w = try await World()
        let path = w.dir.appendingPathComponent("phone").path
        let tee = try SimulatedTee.open(stateDir: path)
        let client = try BiopayClient.withSimulatedTee(rpId: rp, tee: tee)
        let c = try w.payChallenge("o2")
        tee.presentFinger(label: "right-thumb")
        let s1 = try await client.authorize(challenge: c)
        XCTAssertEqual(try w.verifier.verifyPayment(statement: s1).counter, 1)
    }
}

// --- the platform-keystore path -------------------------------------------

let appPackage = "com.example.pay"
let digest = Data(repeating: 0xAB, count: 32)

struct SensorFailure: Error {}

/// Opens once; until then `wait` suspends (the user looking at the prompt).
actor Gate {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }
    func open() {
        isOpen = true
        waiters.forEach { $0.resume() }
        waiters = []
    }
}

/// A test double of the Secure Enclave / Android Keystore on CryptoKit:
/// P256.Signing keys in memory by alias, DER signatures, and an attestation
/// chain from the simulated vendor's KeyMint test-double CA. `signError` is
/// thrown by the next `sign` (after `signDelayNanos`), as a LocalAuthentication
/// failure would be; while `gate` is set, `sign` waits for it.
final class CryptoKitKeystore: PlatformKeystore, @unchecked Sendable {
    let vendor: SimulatedVendor
    private let lock = NSLock()
    var keys: [String: P256.Signing.PrivateKey] = [:]
    var invalidated: Set<String> = []
    var prompts: [String] = []
    var signError: Error?
    var signDelayNanos: UInt64 = 0
    var gate: Gate?
    var promptsUp = 0
    var mostPromptsUp = 0
    var promptsCancelled = 0

    init(vendor: SimulatedVendor) { self.vendor = vendor }

    func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body()
    }

    func generateKey(alias: String, attestationChallenge: Data, requireStrongBox: Bool) async throws -> GeneratedKey {
        if requireStrongBox { throw BiopayError.Keystore(reason: "no StrongBox here") }
        let key = P256.Signing.PrivateKey()
        let publicKey = key.publicKey.x963Representation
        let chain = try vendor.certifyKeystoreKey(
            publicKey: publicKey, attestationChallenge: attestationChallenge,
            packageName: appPackage, signingCertDigest: digest, strongBox: false)
        locked { keys[alias] = key }
        return GeneratedKey(publicKey: publicKey, attestationChain: chain, strongBox: false)
    }

    func sign(alias: String, data: Data, promptText: String) async throws -> Data {
        let gate: Gate? = locked {
            prompts.append(promptText)
            promptsUp += 1
            mostPromptsUp = max(mostPromptsUp, promptsUp)
            return self.gate
        }
        defer { locked { promptsUp -= 1 } }
        do {
            // The SDK call was cancelled: uniffi cancels this task; a real
            // keystore invalidates its LAContext here (the prompt closes).
            try await withTaskCancellationHandler {
                if let gate { await gate.wait() }
                try Task.checkCancellation()
                if signDelayNanos > 0 { try await Task.sleep(nanoseconds: signDelayNanos) }
            } onCancel: {
                if let gate { Task { await gate.open() } }
            }
        } catch is CancellationError {
            locked { promptsCancelled += 1 }
            throw BiopayError.Cancelled
        }
        return try locked {
            if let error = signError {
                signError = nil
                throw error
            }
            guard let key = keys[alias], !invalidated.contains(alias) else { throw BiopayError.KeyInvalidated }
            return try key.signature(for: data).derRepresentation
        }
    }

    func deleteKey(alias: String) throws {
        locked {
            keys[alias] = nil
            _ = invalidated.remove(alias)
        }
    }

    func keyState(alias: String) throws -> KeyState {
        try locked {
            if keys[alias] == nil { return .missing }
            return invalidated.contains(alias) ? .invalidated : .valid
        }
    }
}

/// XCTAssertThrowsError for an async expression.
func assertThrowsAsync<T>(
    _ body: @autoclosure () async throws -> T,
    file: StaticString = #filePath, line: UInt = #line,
    _ handler: (Error) -> Void = { _ in }
) async {
    do {
        _ = try await body()
        XCTFail("nothing thrown", file: file, line: line)
    } catch {
        handler(error)
    }
}

struct TimedOut: Error { let what: String }

/// Waits (bounded) until `cond` holds; fails the test otherwise.
func eventually(_ what: String, _ cond: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(10)
    while !cond() {
        if Date() > deadline { throw TimedOut(what: what) }
        try await Task.sleep(nanoseconds: 5_000_000)
    }
}

final class KeystoreWorld {
    let vendor: SimulatedVendor
    let verifier: PaymentVerifier
    let dir: URL
    let tee: SimulatedTee
    let appDir: String

    init() throws {
        vendor = try SimulatedVendor(name: "Acme Devices", seed: Data("swift keystore vendor".utf8))
        verifier = try PaymentVerifier(rpId: rp, models: [])
        try verifier.trustAndroid(config: AndroidTrustConfig(
            rootSpkis: [vendor.androidTrustRoot()], includeGoogleRoots: false, packageName: appPackage,
            signingCertDigests: [digest], minOsPatchLevel: 202401, requireStrongBox: false))
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("biopay-swift-ks-\(UUID().uuidString)")
        tee = try SimulatedTee.provision(vendor: vendor, modelId: model, stateDir: dir.appendingPathComponent("phone").path)
        try tee.enrollFingerprint(label: "right-thumb")
        appDir = dir.appendingPathComponent("app").path
    }

    func register(_ client: BiopayClient, beforeSign: () -> Void = {}) async throws -> Data {
        let c = try verifier.registrationChallenge(accountHandle: Data("account-7".utf8), modalities: [.fingerprint], required: .tee)
        beforeSign()
        let reg = try verifier.verifyPlatformRegistration(statement: try await client.register(challenge: c, modalities: [.fingerprint]))
        XCTAssertEqual(reg.kind, "platform_keystore")
        return reg.credentialId
    }

    func payChallenge(_ id: Data, _ order: String) throws -> Data {
        try verifier.paymentChallenge(credentialId: id, transaction: Transaction(
            amountMinor: 8800, currency: "CNY", payeeId: "merchant-0042",
            payeeName: "Coffee Corner", orderId: order, memo: nil))
    }

    deinit { try? FileManager.default.removeItem(at: dir) }
}

final class KeystoreTests: XCTestCase {
    func testFullLinkOnSimulatedTeeAsKeystore() async throws {
        let w = try KeystoreWorld()
        let ks = try w.tee.asKeystore(packageName: appPackage, signingCertDigest: digest)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client) { w.tee.presentFinger(label: "right-thumb") }
        XCTAssertEqual(w.tee.lastDisplay(), "Register this device for payments at \(rp)")
        w.tee.presentFinger(label: "right-thumb")
        let ok = try w.verifier.verifyPayment(statement: try await client.authorize(challenge: try w.payChallenge(id, "o1")))
        XCTAssertEqual(ok.counter, 1)
        XCTAssertEqual(ok.modality, .fingerprint)
        XCTAssertFalse(ok.livenessPassed)
        XCTAssertTrue(w.tee.lastDisplay()?.contains("\nPay 88.00 CNY\n") ?? false)
        w.tee.presentFinger(label: "right-thumb")
        let s2 = try await client.deregister(credentialId: id)
        XCTAssertEqual(try w.verifier.verifyDeregistration(statement: s2), id)
        XCTAssertTrue(try client.credentials().isEmpty)
    }

    func testFullLinkWithACryptoKitKeystore() async throws {
        let w = try KeystoreWorld()
        let ks = CryptoKitKeystore(vendor: w.vendor)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client)
        let ok = try w.verifier.verifyPayment(statement: try await client.authorize(challenge: try w.payChallenge(id, "o1")))
        XCTAssertEqual(ok.counter, 1)
        XCTAssertEqual(ks.prompts.count, 2)
        XCTAssertTrue(ks.prompts[1].hasPrefix("\(rp)\nPay 88.00 CNY\nTo: Coffee Corner"))
        let creds = try client.credentials()
        XCTAssertEqual(creds.map { $0.credentialId }, [id])
        XCTAssertTrue(creds[0].valid)
        let s3 = try await client.deregister(credentialId: id)
        XCTAssertEqual(try w.verifier.verifyDeregistration(statement: s3), id)
        XCTAssertTrue(ks.keys.isEmpty)
    }

    func testBiopayErrorsThrownInSwiftKeepTheirVariant() async throws {
        let w = try KeystoreWorld()
        let ks = CryptoKitKeystore(vendor: w.vendor)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client)
        ks.signError = BiopayError.UserCanceled
        await assertThrowsAsync(try await client.authorize(challenge: try w.payChallenge(id, "o1"))) { XCTAssertEqual($0 as? BiopayError, .UserCanceled) }
        ks.signError = BiopayError.LockedOut(untilEpochSeconds: 1_900_000_000)
        await assertThrowsAsync(try await client.authorize(challenge: try w.payChallenge(id, "o2"))) {
            XCTAssertEqual($0 as? BiopayError, .LockedOut(untilEpochSeconds: 1_900_000_000))
        }
        ks.signError = BiopayError.NoMatch
        await assertThrowsAsync(try await client.authorize(challenge: try w.payChallenge(id, "o3"))) { XCTAssertEqual($0 as? BiopayError, .NoMatch) }
        // Three failed prompts used up three counter values.
        let s4 = try await client.authorize(challenge: try w.payChallenge(id, "o4"))
        XCTAssertEqual(try w.verifier.verifyPayment(statement: s4).counter, 4)
    }

    func testAnyOtherErrorArrivesAsKeystore() async throws {
        let w = try KeystoreWorld()
        let ks = CryptoKitKeystore(vendor: w.vendor)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client)
        ks.signError = SensorFailure()
        await assertThrowsAsync(try await client.authorize(challenge: try w.payChallenge(id, "o1"))) { error in
            guard case BiopayError.Keystore(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("SensorFailure"), reason)
        }
    }

    func testInvalidatedKeyIsKeyInvalidated() async throws {
        let w = try KeystoreWorld()
        let ks = try w.tee.asKeystore(packageName: appPackage, signingCertDigest: digest)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client) { w.tee.presentFinger(label: "right-thumb") }
        try w.tee.enrollFingerprint(label: "left-thumb")
        XCTAssertFalse(try client.credentials()[0].valid)
        w.tee.presentFinger(label: "right-thumb")
        await assertThrowsAsync(try await client.authorize(challenge: try w.payChallenge(id, "o1"))) { XCTAssertEqual($0 as? BiopayError, .KeyInvalidated) }
        let ck = CryptoKitKeystore(vendor: w.vendor)
        let other = try BiopayClient.withKeystore(rpId: rp, keystore: ck, stateDir: w.dir.appendingPathComponent("app2").path)
        let id2 = try await w.register(other)
        ck.invalidated = Set(ck.keys.keys)
        await assertThrowsAsync(try await other.authorize(challenge: try w.payChallenge(id2, "o2"))) { XCTAssertEqual($0 as? BiopayError, .KeyInvalidated) }
        XCTAssertEqual(ck.prompts.count, 1, "no prompt for an invalidated key")
    }

    func testStateSurvivesARestartAndCorruptionIsReported() async throws {
        let w = try KeystoreWorld()
        let ks = CryptoKitKeystore(vendor: w.vendor)
        var id = Data()
        do {
            let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
            id = try await w.register(client)
            _ = try w.verifier.verifyPayment(statement: try await client.authorize(challenge: try w.payChallenge(id, "o1")))
        }
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        XCTAssertEqual(try client.credentials().map { $0.credentialId }, [id])
        let s5 = try await client.authorize(challenge: try w.payChallenge(id, "o2"))
        XCTAssertEqual(try w.verifier.verifyPayment(statement: s5).counter, 2)
        let file = URL(fileURLWithPath: w.appDir).appendingPathComponent("biopay-keystore-\(rp).json")
        try Data("{ not json".utf8).write(to: file)
        XCTAssertThrowsError(try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)) { error in
            guard case BiopayError.Keystore(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("corrupt"), reason)
        }
    }

    func testKeystoreObjectsAreReleased() async throws {
        let w = try KeystoreWorld()
        var ks: PlatformKeystore? = try w.tee.asKeystore(packageName: appPackage, signingCertDigest: digest)
        var client: BiopayClient? = try BiopayClient.withKeystore(rpId: rp, keystore: ks!, stateDir: w.appDir)
        weak var weakClient = client
        weak var weakKeystore = ks
        client = nil
        ks = nil
        XCTAssertNil(weakClient)
        XCTAssertNil(weakKeystore)
    }
}

/// The async API: completion, cancellation during the prompt (Swift tasks do
/// not propagate cancellation across the FFI: `client.cancel()` from a
/// cancellation handler), two concurrent calls, an error after a delay.
final class AsyncTests: XCTestCase {
    func storedCounter(_ w: KeystoreWorld) throws -> Int {
        let file = URL(fileURLWithPath: w.appDir).appendingPathComponent("biopay-keystore-\(rp).json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any]
        let creds = json?["credentials"] as? [[String: Any]] ?? []
        XCTAssertEqual(creds.count, 1)
        return creds.first?["counter"] as? Int ?? -1
    }

    func testAPaymentCompletesWhileTheCallerIsFree() async throws {
        let w = try KeystoreWorld()
        let ks = CryptoKitKeystore(vendor: w.vendor)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client)
        let gate = Gate()
        ks.gate = gate
        let c = try w.payChallenge(id, "o1")
        let paying = Task { try await client.authorize(challenge: c) }
        try await eventually("the prompt is up") { ks.locked { ks.promptsUp == 1 } }
        // The main-thread deadlock of #15 item 4: credentials answer during the prompt.
        XCTAssertEqual(try client.credentials().count, 1)
        await gate.open()
        let statement = try await paying.value
        XCTAssertEqual(try w.verifier.verifyPayment(statement: statement).counter, 1)
    }

    func testCancellingTheTaskDuringThePromptUsesNoCounter() async throws {
        let w = try KeystoreWorld()
        let ks = CryptoKitKeystore(vendor: w.vendor)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client)
        ks.gate = Gate()
        let c = try w.payChallenge(id, "o1")
        let paying = Task {
            try await withTaskCancellationHandler {
                try await client.authorize(challenge: c)
            } onCancel: {
                client.cancel()
            }
        }
        try await eventually("the prompt is up") { ks.locked { ks.promptsUp == 1 } }
        XCTAssertEqual(try storedCounter(w), 1)
        paying.cancel()
        let result = await paying.result
        guard case .failure(let error) = result else { return XCTFail("completed: \(result)") }
        XCTAssertEqual(error as? BiopayError, .Cancelled)
        try await eventually("the keystore's sign was cancelled") { ks.locked { ks.promptsCancelled == 1 } }
        XCTAssertEqual(try storedCounter(w), 0)
        ks.gate = nil
        let next = try await client.authorize(challenge: try w.payChallenge(id, "o2"))
        XCTAssertEqual(try w.verifier.verifyPayment(statement: next).counter, 1)
    }

    func testTwoConcurrentCallsAreSerialisedAndBothComplete() async throws {
        let w = try KeystoreWorld()
        let ks = CryptoKitKeystore(vendor: w.vendor)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client)
        let gate = Gate()
        ks.gate = gate
        let c1 = try w.payChallenge(id, "o1")
        let c2 = try w.payChallenge(id, "o2")
        let a = Task { try await client.authorize(challenge: c1) }
        let b = Task { try await client.authorize(challenge: c2) }
        try await eventually("a prompt is up") { ks.locked { ks.promptsUp == 1 } }
        await gate.open()
        let counters = [try await a.value, try await b.value]
            .map { try? w.verifier.verifyPayment(statement: $0).counter }
        XCTAssertEqual(Set(counters.compactMap { $0 }), [1, 2])
        XCTAssertEqual(ks.locked { ks.mostPromptsUp }, 1, "never two prompts at once")
    }

    func testAnErrorThrownAfterADelayArrivesTyped() async throws {
        let w = try KeystoreWorld()
        let ks = CryptoKitKeystore(vendor: w.vendor)
        let client = try BiopayClient.withKeystore(rpId: rp, keystore: ks, stateDir: w.appDir)
        let id = try await w.register(client)
        ks.signDelayNanos = 50_000_000
        ks.signError = BiopayError.NoMatch
        await assertThrowsAsync(try await client.authorize(challenge: try w.payChallenge(id, "o1"))) {
            XCTAssertEqual($0 as? BiopayError, .NoMatch)
        }
        ks.signError = SensorFailure()
        await assertThrowsAsync(try await client.authorize(challenge: try w.payChallenge(id, "o2"))) { error in
            guard case BiopayError.Keystore(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("SensorFailure"), reason)
        }
        ks.signDelayNanos = 0
        let ok = try await client.authorize(challenge: try w.payChallenge(id, "o3"))
        XCTAssertEqual(try w.verifier.verifyPayment(statement: ok).counter, 3)
    }
}
