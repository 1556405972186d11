//! The BTNS pin store on disk ([`crate::EndpointConfig::pin_file`]).
//!
//! `ike` keeps the pins (SSH `known_hosts` style: a peer address first seen
//! with a key is expected with that key afterwards, [`ike::PinStore`]) and
//! says when one is added ([`ike::Event::PeerKeyPinned`]). This module
//! reads the file at bind and writes it back: atomically (a temporary file
//! in the same directory, then `rename`), mode 0600, at most once per
//! [`WRITE_EVERY`] while pins keep coming, and always at shutdown. So a
//! restarted daemon still refuses the key change it refused before, and a
//! crash loses at most the pins of the last second.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shortest time between two writes of the file.
pub(crate) const WRITE_EVERY: Duration = Duration::from_secs(1);

/// Why the pin file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PinFileError {
    /// The file exists but could not be read, or could not be written.
    #[error("pin file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of the file is not `ADDRESS sha256:HEX`.
    #[error("pin file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line and what is wrong with it.
        source: ike::PinParseError,
    },
}

/// Read the pin store at `path`. A file that does not exist yet is an
/// empty store (the first run); anything else that fails is an error.
pub(crate) fn load(path: &Path, policy: ike::PinPolicy) -> Result<ike::PinStore, PinFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(PinFileError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    ike::PinStore::from_text(&text, policy).map_err(|source| PinFileError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Write `pins` to `path` atomically with mode 0600.
pub(crate) fn store(path: &Path, pins: &ike::PinStore) -> Result<(), PinFileError> {
    let io = |source| PinFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?
    };
    let text = format!(
        "# latchkey BTNS pins: ADDRESS sha256:<SHA-256 of the peer's SubjectPublicKeyInfo>\n{}",
        pins.to_text()
    );
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// The driver's side: the file, and whether the pins changed since the
/// last write.
#[derive(Debug)]
pub(crate) struct PinFile {
    path: PathBuf,
    dirty: bool,
    last_write: Option<Instant>,
}

impl PinFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            dirty: false,
            last_write: None,
        }
    }

    /// A pin was added.
    pub(crate) fn changed(&mut self) {
        self.dirty = true;
    }

    /// When the next write is due, if one is.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if !self.dirty {
            return None;
        }
        Some(
            self.last_write
                .map_or_else(Instant::now, |t| t + WRITE_EVERY),
        )
    }

    /// Write the file if it is due at `now` (or always, with `force`, at
    /// shutdown). A failed write is logged and retried at the next
    /// deadline: the pins stay in memory either way.
    pub(crate) fn flush(&mut self, pins: &ike::PinStore, now: Instant, force: bool) {
        let due = self.last_write.is_none_or(|t| now >= t + WRITE_EVERY);
        if !self.dirty || !(due || force) {
            return;
        }
        self.last_write = Some(now);
        match store(&self.path, pins) {
            Ok(()) => {
                self.dirty = false;
                tracing::debug!(path = %self.path.display(), pins = pins.len(), "pin file written");
            }
            Err(e) => tracing::warn!(error = %e, "pins not saved; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(b: u8) -> certs::SpkiFingerprint {
        certs::SpkiFingerprint([b; 32])
    }

    #[test]
    fn missing_file_is_empty_and_bad_line_names_file_and_line() {
        let dir = tempdir();
        let path = dir.join("pins");
        assert!(load(&path, ike::PinPolicy::Refuse).unwrap().is_empty());
        std::fs::write(&path, "192.0.2.1 sha256:00\n").unwrap();
        let e = load(&path, ike::PinPolicy::Refuse).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("line 1"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn written_at_most_once_per_interval_and_at_shutdown() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir();
        let path = dir.join("pins");
        let mut pins = ike::PinStore::default();
        let mut f = PinFile::new(path.clone());
        let t0 = Instant::now();
        assert_eq!(f.deadline(), None);
        pins.pin("192.0.2.1".parse().unwrap(), fp(1));
        f.changed();
        f.flush(&pins, t0, false);
        let back = load(&path, ike::PinPolicy::Refuse).unwrap();
        assert_eq!(back, pins);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second pin within the interval waits for it...
        pins.pin("192.0.2.2".parse().unwrap(), fp(2));
        f.changed();
        assert_eq!(f.deadline(), Some(t0 + WRITE_EVERY));
        f.flush(&pins, t0 + Duration::from_millis(10), false);
        assert_eq!(load(&path, ike::PinPolicy::Refuse).unwrap().len(), 1);
        // ... unless the endpoint shuts down.
        f.flush(&pins, t0 + Duration::from_millis(20), true);
        assert_eq!(load(&path, ike::PinPolicy::Refuse).unwrap(), pins);
        assert_eq!(f.deadline(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        use rand_core::RngCore;
        let d = std::env::temp_dir().join(format!(
            "latchkey-pins-{}-{:x}",
            std::process::id(),
            rand_core::OsRng.next_u64()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
