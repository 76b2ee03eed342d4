#!/usr/bin/env python3
"""Cross-implementation check: every committed test vector is verified with
pycose (an independent COSE implementation, with pyca/cryptography for ECDSA),
and its verdict must equal the manifest's `signature_valid`.

Usage: scripts/cose_crosscheck.py [docs/vectors]
"""
import json
import pathlib
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
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
