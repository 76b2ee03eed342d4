//! The payment challenge MAC keys (docs/PROTOCOL.md §6.1.3), kept like the
//! audit signing key: a file only its owner may read (mode 0600), created at
//! the first start when missing, shared by every process on one database by
//! pointing `challenge_key` at the same file.
//!
//! The file is text, one key a line: a key id (1–255, decimal), one space,
//! 64 hex digits of secret. The first line is the current key, which MACs
//! new challenges; the others still verify theirs. To rotate, put a new line
//! first on every process and restart them; remove the old line once
//! `challenge_ttl_secs` plus the clock skew have passed.

use biopay_core::verifier::ChallengeKeys;
use std::{fs, io::Write as _, path::Path};
use zeroize::Zeroizing;

/// The default file name in the data directory.
pub const KEY_FILE: &str = "payment-challenge-keys";

/// Loads the key set at `path`, creating a file with one random key (id 1)
/// when it does not exist.
pub fn load_or_create(path: &Path) -> Result<ChallengeKeys, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    if !path.exists() {
        let mut secret = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret[..])
            .map_err(|_| "random key generation failed".to_owned())?;
        let hex_secret = Zeroizing::new(hex::encode(&secret[..]));
        let line = Zeroizing::new(format!("1 {}\n", hex_secret.as_str()));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => f
                .write_all(line.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("write {}: {e}", path.display()))?,
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("create {}: {e}", path.display())),
        }
    }
    load(path)
}

/// Loads an existing key set. Refuses a file that other users may read or
/// write (unix), an empty one, a bad line and a repeated key id.
pub fn load(path: &Path) -> Result<ChallengeKeys, String> {
    let name = path.display();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|e| format!("challenge keys {name}: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "challenge keys {name} have mode {:o}: readable by their owner only (chmod 600)",
                mode & 0o777
            ));
        }
    }
    let text = Zeroizing::new(
        fs::read_to_string(path).map_err(|e| format!("read challenge keys {name}: {e}"))?,
    );
    let mut keys: Option<ChallengeKeys> = None;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || format!("challenge keys {name} line {}: want `ID HEX64`", n + 1);
        let (id, hex_secret) = line.trim().split_once(' ').ok_or_else(bad)?;
        let id: u8 = id.parse().map_err(|_| bad())?;
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_secret.trim(), &mut secret[..]).map_err(|_| bad())?;
        keys = Some(match keys {
            None => ChallengeKeys::new(id, &secret),
            Some(k) => k
                .with_previous(id, &secret)
                .map_err(|e| format!("challenge keys {name}: {e}"))?,
        });
    }
    keys.ok_or_else(|| format!("challenge keys {name}: no key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_the_same_for_a_second_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.ids(), vec![1]);
        assert_eq!(b.ids(), vec![1]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{a:?}").contains(&fs::read_to_string(&path).unwrap()[2..10]));
    }

    #[test]
    fn rotation_file_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let write = |text: &str| {
            fs::write(&path, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            }
        };
        write(&format!("2 {}\n1 {}\n", "22".repeat(32), "11".repeat(32)));
        let k = load(&path).unwrap();
        assert_eq!(k.current_id(), 2);
        assert_eq!(k.ids(), vec![2, 1]);
        for bad in [
            String::new(),
            format!("1 {}\n1 {}\n", "22".repeat(32), "11".repeat(32)),
            format!("256 {}\n", "22".repeat(32)),
            format!("1 {}\n", "22".repeat(31)),
            "1\n".to_owned(),
        ] {
            write(&bad);
            assert!(load(&path).is_err(), "{bad:?}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            write(&format!("1 {}\n", "22".repeat(32)));
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(load(&path).unwrap_err().contains("mode"));
        }
    }
}
