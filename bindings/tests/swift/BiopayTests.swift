// The biopay SDK from Swift: the same suite as bindings/tests/kotlin/BiopayTest.kt.
// Needs a Swift toolchain (macOS or Linux); see bindings/swift/README.md.
// On the CI machine (no Swift) it is only syntax-checked with tree-sitter-swift.
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

    init() throws {
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
        let attestation = try client.register(challenge: challenge, modalities: [.fingerprint, .face])
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
    func testFullLink() throws {
        let w = try World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "right-thumb")
        let approved = try w.verifier.verifyPayment(statement: try w.client.authorize(challenge: c))
        XCTAssertEqual(approved.transaction.amountMinor, 8800)
        XCTAssertEqual(approved.modality, .fingerprint)
        XCTAssertEqual(approved.counter, 1)
        XCTAssertTrue(w.tee.lastDisplay()?.contains("\nPay 88.00 CNY\n") ?? false)
        let creds = try w.client.credentials()
        XCTAssertEqual(creds.map { $0.credentialId }, [w.credentialId])
        XCTAssertTrue(creds[0].valid)
    }

    func testReplayRejectedAtP9() throws {
        let w = try World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "right-thumb")
        let a = try w.client.authorize(challenge: c)
        _ = try w.verifier.verifyPayment(statement: a)
        XCTAssertThrowsError(try w.verifier.verifyPayment(statement: a)) { error in
            guard case VerificationError.Rejected(let code, let name, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "P9")
            XCTAssertEqual(name, "challenge")
        }
    }

    func testTamperedSignatureRejectedAtP5() throws {
        let w = try World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "right-thumb")
        var a = try w.client.authorize(challenge: c)
        a[a.count - 1] ^= 1
        XCTAssertThrowsError(try w.verifier.verifyPayment(statement: a)) { error in
            guard case VerificationError.Rejected(let code, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "P5")
        }
    }

    func testHighValueNeedsALiveFace() throws {
        let w = try World()
        let c = try w.payChallenge("big", 500_000)
        w.tee.presentFinger(label: "right-thumb")
        XCTAssertThrowsError(try w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .UserCanceled) }
        w.tee.presentFace()
        let ok = try w.verifier.verifyPayment(statement: try w.client.authorize(challenge: c))
        XCTAssertEqual(ok.modality, .face)
        XCTAssertTrue(ok.livenessPassed)
    }

    func testErrorMapping() throws {
        let w = try World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "stranger")
        XCTAssertThrowsError(try w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .NoMatch) }
        w.tee.presentSpoof(modality: .face)
        XCTAssertThrowsError(try w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .SpoofDetected) }
        w.tee.presentCancel()
        XCTAssertThrowsError(try w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .UserCanceled) }
        w.tee.willConfirm(confirm: false)
        XCTAssertThrowsError(try w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .TransactionDeclined) }
        XCTAssertThrowsError(try w.client.authorize(challenge: Data([1, 2]))) { error in
            guard case BiopayError.InvalidChallenge(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertFalse(reason.isEmpty)
        }
    }

    func testLockoutSaysUntilWhen() throws {
        let w = try World()
        let c = try w.payChallenge("o1")
        for _ in 0..<5 {
            w.tee.presentFinger(label: "stranger")
            XCTAssertThrowsError(try w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .NoMatch) }
        }
        w.tee.presentFinger(label: "right-thumb")
        XCTAssertThrowsError(try w.client.authorize(challenge: c)) { error in
            guard case BiopayError.LockedOut(let until) = error, let until else { return XCTFail("\(error)") }
            let now = Int64(Date().timeIntervalSince1970)
            XCTAssertTrue(until > now && until <= now + 31)
        }
        try w.tee.passcodeReset()
        _ = try w.verifier.verifyPayment(statement: try w.client.authorize(challenge: c))
    }

    func testDeletedKeyAndNotEnrolled() throws {
        let w = try World()
        let c = try w.payChallenge("o1")
        let d = try w.client.deregister(credentialId: w.credentialId)
        XCTAssertEqual(try w.verifier.verifyDeregistration(statement: d), w.credentialId)
        w.tee.presentFinger(label: "right-thumb")
        XCTAssertThrowsError(try w.client.authorize(challenge: c)) { XCTAssertEqual($0 as? BiopayError, .KeyInvalidated) }
        let bare = try SimulatedTee.provision(vendor: w.vendor, modelId: model, stateDir: w.dir.appendingPathComponent("bare").path)
        let client = try BiopayClient.withSimulatedTee(rpId: rp, tee: bare)
        let reg = try w.verifier.registrationChallenge(accountHandle: Data("a".utf8), modalities: [.face], required: .tee)
        XCTAssertThrowsError(try client.register(challenge: reg, modalities: [.face])) { XCTAssertEqual($0 as? BiopayError, .NotEnrolled) }
    }

    func testRevokedModelRefusedAtP7() throws {
        let w = try World()
        let c = try w.payChallenge("o1")
        w.tee.presentFinger(label: "right-thumb")
        let a = try w.client.authorize(challenge: c)
        XCTAssertTrue(w.verifier.revokeModel(modelId: model))
        XCTAssertThrowsError(try w.verifier.verifyPayment(statement: a)) { error in
            guard case VerificationError.Rejected(let code, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "P7")
        }
    }

    func testObjectsAreReleased() throws {
        var w: World? = try World()
        weak var client = w?.client
        w = nil
        XCTAssertNil(client, "the client object was not released")
    }

    func testDeviceSurvivesRestart() throws {
        let w = try World()
        let path = w.dir.appendingPathComponent("phone").path
        let tee = try SimulatedTee.open(stateDir: path)
        let client = try BiopayClient.withSimulatedTee(rpId: rp, tee: tee)
        let c = try w.payChallenge("o2")
        tee.presentFinger(label: "right-thumb")
        XCTAssertEqual(try w.verifier.verifyPayment(statement: try client.authorize(challenge: c)).counter, 1)
    }
}
