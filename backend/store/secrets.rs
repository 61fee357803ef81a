//! Password parameters sealed at rest.
//!
//! A `password` value is stored as `enc:v1:<base64 of nonce ‖ ciphertext ‖
//! tag>`, XChaCha20-Poly1305 under a 32-byte key kept in
//! `<data_dir>/secret.key`. The 24-byte nonce is random per value (the
//! extended nonce makes random nonces safe however many values are sealed),
//! and the output's and the parameter's names are the associated data: a
//! sealed value copied to another output or parameter does not open. Both
//! names belong to the row's identity: an output cannot be renamed, a
//! renamed parameter is a new parameter, and every write of an output
//! seals all its values again under the names it is written with.
//!
//! The key file is created once, with mode 0600 from its creation (no
//! instant where another user could read it), and must stay so: like ssh
//! with a private key, the service refuses a key that group or others may
//! read. A database whose values are sealed never starts without the key
//! that sealed them: a missing or different key stops the start with a
//! message naming the file, and no value is ever dropped.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;

pub const KEY_FILE: &str = "secret.key";
/// The first sealed form. Another scheme would take `enc:v2:`.
const SEALED_V1: &str = "enc:v1:";
/// What every sealed form starts with, whatever its version.
const SEALED: &str = "enc:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
/// Binds a sealed value to what it is, so that a value sealed by another
/// use of the same key (should there ever be one) never opens here.
const CONTEXT: &[u8] = b"brokerstream output parameter v1";

/// The key that seals password parameters. Its `Debug` shows nothing of it.
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.path.display())
    }
}

/// Why a stored value did not open. Never carries the value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpenError {
    #[error("it is sealed by a scheme this version does not know (a newer brokerstream?)")]
    UnknownScheme,
    #[error("its sealed form is damaged")]
    Malformed,
    #[error("it does not open with this key (another key, or the value was altered or moved)")]
    WrongKey,
}

/// Whether a stored value is sealed (any version): what is not was written
/// in clear by a version before encryption.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

impl SecretKey {
    /// The key in `data_dir`, created if missing and `may_create`. The
    /// caller says whether it may: not when sealed values exist, as a new
    /// key would not open them.
    pub fn load(data_dir: &Path, may_create: bool) -> anyhow::Result<SecretKey> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Self::read(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !may_create {
                    anyhow::bail!(
                        "the secret key file {} is missing, and the database holds password \
                         parameters encrypted with it: restore that file from a backup of the \
                         data directory (a new key would not decrypt them, and brokerstream \
                         will not drop them)",
                        path.display()
                    );
                }
                Self::create(&path)
            }
            Err(e) => anyhow::bail!("cannot read the secret key file {}: {e}", path.display()),
        }
    }

    fn from_bytes(bytes: &[u8; KEY_BYTES], path: &Path) -> SecretKey {
        SecretKey {
            cipher: XChaCha20Poly1305::new(bytes.into()),
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(path: &Path) -> anyhow::Result<SecretKey> {
        let meta = std::fs::metadata(path).map_err(|e| {
            anyhow::anyhow!("cannot read the secret key file {}: {e}", path.display())
        })?;
        if !meta.is_file() {
            anyhow::bail!(
                "the secret key file {} is not a regular file",
                path.display()
            );
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the secret key file {} is accessible to group or others (mode {mode:04o}); \
                 it must be readable by the service's user only: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the secret key file {}: {e}", path.display())
        })?;
        let bytes = decode_hex(text.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "the secret key file {} does not hold a key ({} hexadecimal digits expected)",
                path.display(),
                KEY_BYTES * 2
            )
        })?;
        Ok(Self::from_bytes(&bytes, path))
    }

    /// Writes a new random key beside its final name and links it there:
    /// the file is 0600 from its creation, whole when it appears, and a
    /// key that appeared meanwhile (another process) is kept, not replaced.
    fn create(path: &Path) -> anyhow::Result<SecretKey> {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let dir = path.parent().unwrap_or(Path::new("."));
        let temporary = dir.join(format!(
            ".{KEY_FILE}.{}.{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let fail = |e: std::io::Error| {
            anyhow::anyhow!("cannot create the secret key file {}: {e}", path.display())
        };
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(format!("{}\n", encode_hex(&bytes)).as_bytes())?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(fail(e));
        }
        let linked = std::fs::hard_link(&temporary, path);
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => {
                if let Ok(dir) = std::fs::File::open(dir) {
                    let _ = dir.sync_all();
                }
                tracing::info!(
                    "created the secret key {}: keep a copy of it with the database backups",
                    path.display()
                );
                Ok(Self::from_bytes(&bytes, path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read(path),
            Err(e) => Err(fail(e)),
        }
    }

    /// The stored form of a password value of parameter `param` of `output`.
    pub fn seal(&self, output: &str, param: &str, clear: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(output, param);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: clear.as_bytes(),
                    aad: &aad,
                },
            )
            // Only a message beyond 256 GiB fails; a parameter is far below.
            .expect("a parameter value is small enough to encrypt");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_V1}{}", BASE64.encode(bytes))
    }

    /// The clear value of a sealed one.
    pub fn open(&self, output: &str, param: &str, stored: &str) -> Result<String, OpenError> {
        let Some(encoded) = stored.strip_prefix(SEALED_V1) else {
            return Err(OpenError::UnknownScheme);
        };
        let bytes = BASE64.decode(encoded).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let aad = associated_data(output, param);
        let clear = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::WrongKey)?;
        String::from_utf8(clear).map_err(|_| OpenError::Malformed)
    }
}

/// Length-prefixed names, so that no two (output, parameter) pairs give
/// the same bytes.
fn associated_data(output: &str, param: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(CONTEXT.len() + 8 + output.len() + param.len());
    aad.extend_from_slice(CONTEXT);
    for part in [output, param] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<[u8; KEY_BYTES]> {
    if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; KEY_BYTES];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_in_its_own_place() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load(dir.path(), true).unwrap();
        let sealed = key.seal("influx", "influx_password", "hunter2");
        assert!(sealed.starts_with("enc:v1:"), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            key.open("influx", "influx_password", &sealed).unwrap(),
            "hunter2"
        );
        // A fresh nonce each time: the same value never seals the same way.
        assert_ne!(sealed, key.seal("influx", "influx_password", "hunter2"));
        // Moved to another parameter or output, it does not open.
        assert_eq!(
            key.open("influx", "other", &sealed),
            Err(OpenError::WrongKey)
        );
        assert_eq!(
            key.open("elastic", "influx_password", &sealed),
            Err(OpenError::WrongKey)
        );
        // Names that concatenate alike are still told apart.
        let ab = key.seal("a", "bc", "x");
        assert_eq!(key.open("ab", "c", &ab), Err(OpenError::WrongKey));
        // Damaged or unknown forms are refused, not passed through.
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            key.open("influx", "influx_password", &flipped),
            Err(OpenError::WrongKey)
        );
        assert_eq!(key.open("o", "p", "enc:v1:%%%"), Err(OpenError::Malformed));
        assert_eq!(key.open("o", "p", "enc:v1:AAAA"), Err(OpenError::Malformed));
        assert_eq!(
            key.open("o", "p", "enc:v9:AAAA"),
            Err(OpenError::UnknownScheme)
        );
        // Another key does not open it.
        let other_dir = tempfile::tempdir().unwrap();
        let other = SecretKey::load(other_dir.path(), true).unwrap();
        assert_eq!(
            other.open("influx", "influx_password", &sealed),
            Err(OpenError::WrongKey)
        );
    }

    #[test]
    fn the_key_file_is_private_from_its_creation_and_must_stay_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let key = SecretKey::load(dir.path(), true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left beside it.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![KEY_FILE.to_owned()]);
        // Loaded again, it is the same key.
        let sealed = key.seal("o", "p", "v");
        let again = SecretKey::load(dir.path(), false).unwrap();
        assert_eq!(again.open("o", "p", &sealed).unwrap(), "v");
        // Readable by the group: refused, naming the file and the fix.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = SecretKey::load(dir.path(), false).unwrap_err().to_string();
        assert!(error.contains(path.to_str().unwrap()), "{error}");
        assert!(error.contains("chmod 600"), "{error}");
        // Not a key: refused.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short\n").unwrap();
        let error = SecretKey::load(dir.path(), true).unwrap_err().to_string();
        assert!(error.contains("hexadecimal"), "{error}");
        // Missing where it may not be created: refused, naming the file.
        std::fs::remove_file(&path).unwrap();
        let error = SecretKey::load(dir.path(), false).unwrap_err().to_string();
        assert!(error.contains(path.to_str().unwrap()), "{error}");
        assert!(!path.exists());
    }
}
