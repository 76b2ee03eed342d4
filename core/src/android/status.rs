//! Google's Android attestation revocation status list
//! (<https://android.googleapis.com/attestation/status>): a JSON object
//! `{"entries": {SERIAL: {"status": ..., "reason": ..., "comment"?: ...}}}`
//! keyed by the certificate serial number in lower-case hex. The caller
//! fetches it; this module only parses and looks it up.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A listed status. `REVOKED` and `SUSPENDED` both reject; a status this
/// crate does not know rejects too (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum RevocationStatus {
    /// `REVOKED`.
    #[serde(rename = "REVOKED")]
    Revoked,
    /// `SUSPENDED`.
    #[serde(rename = "SUSPENDED")]
    Suspended,
    /// Any other status string.
    #[serde(untagged)]
    Other(String),
}

impl core::fmt::Display for RevocationStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Revoked => f.write_str("REVOKED"),
            Self::Suspended => f.write_str("SUSPENDED"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEntry {
    /// The status.
    pub status: RevocationStatus,
    /// The reason given (e.g. `KEY_COMPROMISE`), if any.
    pub reason: Option<String>,
    /// A free-form comment, if any.
    pub comment: Option<String>,
}

/// Why a status list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed attestation status list: {0}")]
pub struct StatusListError(pub String);

#[derive(Deserialize)]
struct RawList {
    entries: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    status: String,
    reason: Option<String>,
    comment: Option<String>,
}

/// A parsed status list, keyed by normalized serial (lower-case hex without
/// leading zeros).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusList {
    entries: BTreeMap<String, StatusEntry>,
}

/// Normalizes a hex serial: lower case, no leading zeros (`"0"` for zero).
pub fn normalize_serial(serial: &str) -> String {
    let lower = serial.trim().to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

impl StatusList {
    /// Parses the JSON list.
    pub fn from_json(json: &[u8]) -> Result<Self, StatusListError> {
        let raw: RawList =
            serde_json::from_slice(json).map_err(|e| StatusListError(e.to_string()))?;
        let mut list = Self::default();
        for (serial, e) in raw.entries {
            if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(StatusListError(format!("serial {serial:?} is not hex")));
            }
            let status = match e.status.as_str() {
                "REVOKED" => RevocationStatus::Revoked,
                "SUSPENDED" => RevocationStatus::Suspended,
                _ => RevocationStatus::Other(e.status),
            };
            list.insert(
                &serial,
                StatusEntry {
                    status,
                    reason: e.reason,
                    comment: e.comment,
                },
            );
        }
        Ok(list)
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, serial_hex: &str, entry: StatusEntry) {
        self.entries.insert(normalize_serial(serial_hex), entry);
    }

    /// The entry for a serial (hex, any case, leading zeros ignored).
    pub fn lookup(&self, serial_hex: &str) -> Option<&StatusEntry> {
        self.entries.get(&normalize_serial(serial_hex))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_googles_format() {
        let json = br#"{"entries": {"00AB": {"status": "REVOKED", "reason": "KEY_COMPROMISE"},
            "cd": {"status": "SUSPENDED", "reason": "SUPERSEDED", "comment": "x"},
            "ef": {"status": "SOMETHING_NEW"}}}"#;
        let list = StatusList::from_json(json).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list.lookup("ab").unwrap().status, RevocationStatus::Revoked);
        assert_eq!(
            list.lookup("CD").unwrap().status,
            RevocationStatus::Suspended
        );
        assert_eq!(
            list.lookup("ef").unwrap().status,
            RevocationStatus::Other("SOMETHING_NEW".into())
        );
        assert!(list.lookup("12").is_none());
        assert!(StatusList::from_json(br#"{"entries": {"xyz": {"status": "REVOKED"}}}"#).is_err());
        assert!(StatusList::from_json(b"[]").is_err());
    }
}
