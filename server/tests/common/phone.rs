//! A phone (the software TEE behind the app client) registered through a
//! real server, and the small assertions the suites share.

use biopay_server_tools::{
    client::{field_bytes, unb64, ApiClient, Reply},
    demo::DemoDevice,
};

use super::RP;

/// A registered phone: its device and credential.
pub struct Phone {
    pub device: DemoDevice,
    pub id: Vec<u8>,
    pub account: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// Provisions a phone and registers it for `account` through `api`.
pub fn enroll(api: &ApiClient, account: &[u8]) -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let mut device = DemoDevice::provision(&dir.path().join("phone"), RP).unwrap();
    let c = api.registration_challenge(account).unwrap();
    let r = api.register(&device.register(&c).unwrap()).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["counter"], 0);
    let id = unb64(r.body["credential_id"].as_str().unwrap()).unwrap();
    Phone {
        device,
        id,
        account: account.to_vec(),
        _dir: dir,
    }
}

/// A genuine assertion for a fresh challenge (not submitted).
pub fn assertion(api: &ApiClient, p: &mut Phone, order: &str, amount: u64) -> Vec<u8> {
    let c = field_bytes(
        &api.payment_challenge(&p.id, order, amount).unwrap(),
        "challenge",
    )
    .unwrap();
    p.device.authorize(&c).unwrap()
}

/// The reply is an error with this status and code.
#[track_caller]
pub fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.code(), Some(code), "{}", r.body);
}
