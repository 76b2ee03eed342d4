#!/usr/bin/env python3
"""Cross-implementation check: every committed test vector is verified with
pycose (an independent COSE implementation, with pyca/cryptography for ECDSA),
and its verdict must equal the manifest's `signature_valid`.

Vectors whose manifest `signature_form` is "der" (statements of platform-
keystore credentials, docs/PROTOCOL.md §12.3) carry an ASN.1 DER signature,
which COSE itself does not define (RFC 9053 §2.1 wants r || s), so pycose's
verify_signature cannot check them. For those, pycose decodes the message and
builds the Sig_structure (RFC 9052 §4.4), and pyca/cryptography verifies the
DER signature over it with ECDSA P-256 / SHA-256; the protected header must
still name ES256.

Usage: scripts/cose_crosscheck.py [docs/vectors]
"""
import json
import pathlib
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pycose.algorithms import Es256
from pycose.headers import Algorithm
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import CoseMessage


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/vectors")
    manifest = json.loads((root / "manifest.json").read_text())
    failures = 0
    checked = 0
    for v in manifest["vectors"]:
        pub = load_pem_public_key((root / v["public_key"]).read_bytes())
        nums = pub.public_numbers()
        key = EC2Key(crv=P256, x=nums.x.to_bytes(32, "big"), y=nums.y.to_bytes(32, "big"))
        raw = (root / v["cose"]).read_bytes()
        try:
            msg = CoseMessage.decode(raw)
            if v.get("signature_form", "fixed") == "der":
                if msg.phdr.get(Algorithm) is not Es256 or not msg.payload:
                    raise ValueError("not an ES256 statement with a payload")
                try:
                    pub.verify(msg.signature, msg._create_sig_structure(), ec.ECDSA(hashes.SHA256()))
                    ok = True
                except InvalidSignature:
                    ok = False
            else:
                msg.key = key
                ok = bool(msg.verify_signature())
        except Exception as e:  # unsupported alg, bad signature encoding, ...
            ok = False
            detail = f" ({type(e).__name__}: {e})"
        else:
            detail = ""
        checked += 1
        if ok != v["signature_valid"]:
            failures += 1
            print(f"MISMATCH {v['name']}: pycose says {ok}, manifest says {v['signature_valid']}{detail}")
        else:
            print(f"ok       {v['name']}: signature_valid={ok}")
    print(f"pycose cross-check: {checked - failures} passed, {failures} failed")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
