"""A back end's first script with the installed wheel: imports only `biopay`
(and the standard library), registers a simulated device, pays, verifies the
payment with PaymentVerifier, and checks that a replay is refused at P9.
Run by scripts/test-bindings.sh in a fresh virtual environment where only
dist/biopay-*.whl was installed; prints "python package: ok"."""
import asyncio
import os
import sys
import tempfile
import typing

import biopay
from biopay import (
    BiopayClient, Modality, PaymentVerifier, SecurityLevel, SimulatedTee,
    SimulatedVendor, Transaction, VerificationError,
)

RP = "pay.example.com"

here = os.path.dirname(os.path.abspath(biopay.__file__))
assert "site-packages" in here, f"biopay imported from {here}, not from the installed wheel"
assert os.path.exists(os.path.join(here, "py.typed")), "the package says it is typed (PEP 561)"
hints = typing.get_type_hints(PaymentVerifier.verify_payment)
assert hints["statement"] is bytes and hints["return"] is biopay.ApprovedPayment, hints

with tempfile.TemporaryDirectory() as d:
    vendor = SimulatedVendor("Acme Devices", b"package test vendor")
    verifier = PaymentVerifier(RP, [vendor.device_model("acme-x1", [Modality.FINGERPRINT], SecurityLevel.TEE)])
    tee = SimulatedTee.provision(vendor, "acme-x1", os.path.join(d, "phone"))
    tee.enroll_fingerprint("right-thumb")
    client = BiopayClient.with_simulated_tee(RP, tee)

    reg = verifier.registration_challenge(b"account-1", [Modality.FINGERPRINT], SecurityLevel.TEE)
    tee.present_finger("right-thumb")
    credential = verifier.verify_registration(asyncio.run(client.register(reg, [Modality.FINGERPRINT])))

    challenge = verifier.payment_challenge(credential.credential_id, Transaction(
        amount_minor=1250, currency="EUR", payee_id="m-1", payee_name="Bakery",
        order_id="order-1", memo=None))
    tee.present_finger("right-thumb")
    assertion = asyncio.run(client.authorize(challenge))
    approved = verifier.verify_payment(assertion)
    assert approved.transaction.amount_minor == 1250 and approved.counter == 1, approved
    try:
        verifier.verify_payment(assertion)
        sys.exit("a replayed payment was accepted")
    except VerificationError.Rejected as e:
        assert e.step_code == "P9", e
print("python package: ok")

# The README's back-end example, run as written: its code block, a server on a
# free port, the app's assertion POSTed to it, then the same one replayed.
import json
import re
import threading
import urllib.error
import urllib.request

readme = open(sys.argv[1], encoding="utf-8").read()
blocks = re.findall(r"### A Python back end.*?```python\n(.*?)```", readme, re.S)
assert len(blocks) == 1, "the README's Python back-end example"
example = {}
exec(compile(blocks[0], "README.md (Python back end)", "exec"), example)

with tempfile.TemporaryDirectory() as d:
    vendor = SimulatedVendor("Acme Devices", b"readme example vendor")
    verifier = PaymentVerifier(RP, [vendor.device_model("acme-x1", [Modality.FINGERPRINT], SecurityLevel.TEE)])
    tee = SimulatedTee.provision(vendor, "acme-x1", os.path.join(d, "phone"))
    tee.enroll_fingerprint("right-thumb")
    client = BiopayClient.with_simulated_tee(RP, tee)
    reg = verifier.registration_challenge(b"account-2", [Modality.FINGERPRINT], SecurityLevel.TEE)
    tee.present_finger("right-thumb")
    cid = verifier.verify_registration(asyncio.run(client.register(reg, [Modality.FINGERPRINT]))).credential_id
    server = example["make_server"](verifier, ("127.0.0.1", 0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/payments/verify"

    def post(body):
        req = urllib.request.Request(url, data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    c = verifier.payment_challenge(cid, Transaction(
        amount_minor=8800, currency="CNY", payee_id="m-42", payee_name="Coffee Corner",
        order_id="order-7", memo=None))
    tee.present_finger("right-thumb")
    assertion = asyncio.run(client.authorize(c))
    status, body = post(assertion)
    assert status == 200 and body["order_id"] == "order-7" and body["counter"] == 1, (status, body)
    status, body = post(assertion)
    assert status == 422 and body["rejected_at"] == "P9", (status, body)
    server.shutdown()
print("python package: README back-end example ok")
