//! Durable file replacement: the write that the software TEE's state (its
//! counters must never go back) and the bindings' platform-keystore state
//! (the same for an app's counters) both rely on.
//!
//! A new version is written to a temporary file (mode 0600 on Unix),
//! fsynced, renamed over the old one, and the directory is fsynced, so after
//! a crash the file is either the old version or the new one, never a mix,
//! and a version reported written survives power loss.

use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
};
use zeroize::Zeroizing;

/// Which step of a durable write failed, on which path.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct WriteError {
    /// What was being done.
    pub op: &'static str,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

fn at(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_owned();
    move |source| WriteError { op, path, source }
}

/// Reads a file that holds secrets into one zeroized buffer of exactly the
/// file's size: no growth, so no copy of its contents is left in freed memory
/// (`fs::read` sizes from the metadata too, but may grow if the file does).
/// A file that changes size while it is read is an error.
pub fn read_secret(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut f = fs::File::open(path)?;
    let len = usize::try_from(f.metadata()?.len())
        .map_err(|_| std::io::Error::other("file too large"))?;
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    f.read_exact(&mut bytes)?;
    let mut probe = Zeroizing::new([0u8; 1]);
    if f.read(probe.as_mut_slice())? != 0 {
        return Err(std::io::Error::other("file grew while being read"));
    }
    Ok(bytes)
}

/// Writes `bytes` to `tmp`, fsyncs it and renames it to `path`. The
/// directory is not synced: call [`sync_dir`] once after one or more of these.
pub fn write_and_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    {
        let mut f = create_private(tmp).map_err(at("creating", tmp))?;
        f.write_all(bytes).map_err(at("writing", tmp))?;
        f.sync_all().map_err(at("syncing", tmp))?;
    }
    fs::rename(tmp, path).map_err(at("renaming into place", path))
}

/// Replaces `path` (in `dir`) with `bytes` durably, through `tmp` (in the same
/// directory): [`write_and_rename`] then [`sync_dir`].
pub fn replace(dir: &Path, tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    fs::create_dir_all(dir).map_err(at("creating directory", dir))?;
    write_and_rename(tmp, path, bytes)?;
    sync_dir(dir)
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Fsyncs a directory, so that renames into it are durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at("syncing directory", dir))
}

/// Fsyncs a directory (a no-op where directories cannot be synced).
#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> Result<(), WriteError> {
    Ok(())
}
