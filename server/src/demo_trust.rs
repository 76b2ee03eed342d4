//! DANGER: the demo trust root, trusted under `--danger-demo-trust` (tests
//! and demos only, never for real payments).
//!
//! The demo vendor is the simulated vendor PKI of `biopay-tee-stub` with a
//! published seed, so anyone can mint attestations that chain to it. The
//! service holds only its root's public key, as a constant: the simulator
//! that signs with it lives in `biopay-server-tools` (`demo-device`, `load`),
//! and the production binary links no simulator. `biopay-server-tools`
//! checks that this key is the one its simulator derives
//! (server-tools/tests/demo_trust.rs).

use biopay_core::{DeviceModel, Modality, ModelStatus, SecurityLevel, TrustAnchor};

/// The demo vendor's name.
pub const DEMO_VENDOR: &str = "Biopay Demo Devices";
/// The demo device model.
pub const DEMO_MODEL: &str = "biopay-demo-phone";
/// The demo vendor's root public key: a DER SubjectPublicKeyInfo (P-256
/// id-ecPublicKey, uncompressed point), hex.
pub const DANGER_DEMO_ROOT_SPKI_HEX: &str = concat!(
    "3059301306072a8648ce3d020106082a8648ce3d03010703420004",
    "d67f8692672da74813d86c4a31ff1861ea3bf110e2b05de6ac3ac5cf5057cd23",
    "ec58a8a6c88dd4ec726dfe7ec40aa456b6de392c3b4c6478bf861002839f6388",
);

/// The demo vendor's root, the trust anchor of [`danger_demo_model`].
pub fn danger_demo_root() -> Result<TrustAnchor, String> {
    Ok(TrustAnchor {
        name: format!("{DEMO_VENDOR} Root CA"),
        spki_der: hex::decode(DANGER_DEMO_ROOT_SPKI_HEX)
            .map_err(|e| format!("demo root key: {e}"))?,
    })
}

/// The demo model's trust entry (fingerprint and face, TEE).
pub fn danger_demo_model() -> Result<DeviceModel, String> {
    // Sorted and deduplicated, as the trust file's models are.
    let mut modalities = vec![Modality::Fingerprint, Modality::Face];
    modalities.sort();
    Ok(DeviceModel {
        id: DEMO_MODEL.to_owned(),
        trust_anchors: vec![danger_demo_root()?],
        modalities,
        security_level: SecurityLevel::Tee,
        status: ModelStatus::Active,
    })
}
