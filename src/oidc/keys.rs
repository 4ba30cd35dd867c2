//! Signing keys: generated here (aws-lc-rs), kept as PKCS#8 PEM files with mode 0600 in a
//! mode-0700 directory, named `<created unix seconds>-<alg>.pem`; the `kid` is the RFC 7638
//! thumbprint of the public key, so it never needs storing.
//!
//! Rotation (`autoheal oidc keygen` adds a key; the files are the state):
//! - every key is published in the JWKS from the moment it exists;
//! - the signing key is the newest key published for at least [`PUBLISH_LEAD`] (so STS and
//!   any cache of the JWKS have it before a token needs it) — or the oldest key when none is
//!   that old yet (a first key signs at once);
//! - a key stops being published once a newer key has been signing for longer than the
//!   longest token lifetime ([`MAX_TOKEN_LIFETIME`]): no unexpired token carries its kid.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};

use super::OidcError;

/// How long a new key is published before it signs.
pub const PUBLISH_LEAD: Duration = Duration::from_secs(10 * 60);
/// The longest a token may live (STS accepts tokens it can still validate).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The signature algorithms STS accepts that we offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// RSA 2048 with SHA-256 (the default; every OIDC consumer supports it).
    Rs256,
    /// ECDSA P-256 with SHA-256 (smaller keys and tokens).
    Es256,
}

impl KeyAlgorithm {
    fn file_tag(self) -> &'static str {
        match self {
            Self::Rs256 => "rs256",
            Self::Es256 => "es256",
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

/// One key: what signs, and what is published.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    pub created: SystemTime,
    pub path: PathBuf,
    pub(super) encoding: EncodingKey,
    /// The public JWK (with `kid`, `alg`, `use`).
    pub jwk: Jwk,
}

/// Never prints key material.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Every key of a key directory, oldest first.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// Reads every `*.pem` key of `dir` (a missing directory holds no key).
    pub fn load(dir: &Path) -> Result<Self, OidcError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(OidcError::KeyDir {
                    dir: dir.to_owned(),
                    reason: "permission denied: the signing keys are readable by the daemon's \
                             user only (autoheal under systemd, root in the compose layout; \
                             operators in the autoheal group read the configuration, not the \
                             keys). Run this as that user (sudo -u autoheal autoheal …), or \
                             give the keys to it (chown -R autoheal: on the key directory)"
                        .into(),
                });
            }
            Err(e) => {
                return Err(OidcError::KeyDir {
                    dir: dir.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("pem") {
                keys.push(read_key(&path)?);
            }
        }
        keys.sort_by_key(|k| k.created);
        Ok(Self { keys })
    }

    /// Creates a new key in `dir` (the directory mode 0700, the file 0600, never
    /// overwriting) and answers it. A directory it creates goes to the owner of the one
    /// above (the state directory, the daemon's user's), the key to the directory's owner.
    pub fn generate(
        dir: &Path,
        algorithm: KeyAlgorithm,
        now: SystemTime,
    ) -> Result<SigningKey, OidcError> {
        let dir_err = |e: std::io::Error| OidcError::KeyDir {
            dir: dir.to_owned(),
            reason: e.to_string(),
        };
        let existed = dir.is_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_err)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
        if !existed && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            hand_to_directory_owner(parent, dir)?;
        }
        let der = match algorithm {
            KeyAlgorithm::Rs256 => {
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .and_then(|k| k.as_der())
                    .map(|d| d.as_ref().to_vec())
            }
            KeyAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| OidcError::Sign("key generation failed".into()))?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
        let created = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let path = dir.join(format!("{created}-{}.pem", algorithm.file_tag()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => OidcError::KeyDir {
                    dir: dir.to_owned(),
                    reason: format!(
                        "{} exists: a key was created this very second; try again in a second",
                        path.display()
                    ),
                },
                _ => dir_err(e),
            })?;
        file.write_all(pem.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(dir_err)?;
        hand_to_directory_owner(dir, &path)?;
        read_key(&path)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Gives a new key (or key directory) to whoever owns the directory it is in — the daemon's
/// user — so a key made with `sudo autoheal oidc keygen` is one the daemon can read. When
/// that cannot be done (not root, the directory someone else's), the new file is removed and
/// the error says how to make it as the right user.
fn hand_to_directory_owner(dir: &Path, key: &Path) -> Result<(), OidcError> {
    use std::os::unix::fs::MetadataExt;
    let owner = fs::metadata(dir).map_err(|e| OidcError::KeyDir {
        dir: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let made = fs::metadata(key).map_err(|e| OidcError::KeyDir {
        dir: dir.to_owned(),
        reason: e.to_string(),
    })?;
    if made.uid() == owner.uid() {
        return Ok(());
    }
    std::os::unix::fs::chown(key, Some(owner.uid()), Some(owner.gid())).map_err(|e| {
        let _ = if key.is_dir() {
            fs::remove_dir(key)
        } else {
            fs::remove_file(key)
        };
        OidcError::KeyDir {
            dir: dir.to_owned(),
            reason: format!(
                "the key directory belongs to uid {} but this process runs as uid {}, and the key \
                 could not be handed over ({e}): the daemon could not read it. Run keygen as the \
                 directory's owner (sudo -u autoheal autoheal oidc keygen)",
                owner.uid(),
                made.uid()
            ),
        }
    })
}

impl KeyRing {
    pub fn all(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The key that signs at `now`.
    pub fn signing_key(&self, now: SystemTime) -> Option<&SigningKey> {
        self.keys
            .iter()
            .rev()
            .find(|k| age(k, now) >= PUBLISH_LEAD)
            .or_else(|| self.keys.first())
    }

    /// When `key` started signing (or will), given the keys before it.
    fn signing_from(&self, index: usize) -> SystemTime {
        let key = &self.keys[index];
        if index == 0 {
            key.created
        } else {
            key.created + PUBLISH_LEAD
        }
    }

    /// The keys the JWKS carries at `now`: all but those retired — a key retires once the
    /// next key has been signing for longer than any token lives.
    pub fn published(&self, now: SystemTime) -> Vec<&SigningKey> {
        (0..self.keys.len())
            .filter(|&i| {
                // Every later key that took over signing more than MAX_TOKEN_LIFETIME ago
                // retires this one.
                !(i + 1..self.keys.len()).any(|j| self.signing_from(j) + MAX_TOKEN_LIFETIME <= now)
            })
            .map(|i| &self.keys[i])
            .collect()
    }
}

fn age(key: &SigningKey, now: SystemTime) -> Duration {
    now.duration_since(key.created).unwrap_or_default()
}

/// Reads one key file: its algorithm and creation time from the name, the key from PEM.
fn read_key(path: &Path) -> Result<SigningKey, OidcError> {
    let bad = |reason: String| OidcError::BadKey {
        path: path.to_owned(),
        reason,
    };
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| bad("not a key file name".into()))?;
    let (created, tag) = name
        .split_once('-')
        .ok_or_else(|| bad("expected <unix seconds>-<rs256|es256>.pem".into()))?;
    let created: u64 = created
        .parse()
        .map_err(|_| bad("expected <unix seconds>-<rs256|es256>.pem".into()))?;
    let algorithm = match tag {
        "rs256" => KeyAlgorithm::Rs256,
        "es256" => KeyAlgorithm::Es256,
        other => return Err(bad(format!("unknown algorithm {other:?}"))),
    };
    let mode = fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "mode {:o} lets others read the signing key: chmod 600 {}",
            mode & 0o777,
            path.display()
        )));
    }
    let pem = fs::read(path).map_err(|e| bad(e.to_string()))?;
    let encoding = match algorithm {
        KeyAlgorithm::Rs256 => EncodingKey::from_rsa_pem(&pem),
        KeyAlgorithm::Es256 => EncodingKey::from_ec_pem(&pem),
    }
    .map_err(|e| bad(e.to_string()))?;
    let mut jwk =
        Jwk::from_encoding_key(&encoding, algorithm.jwt()).map_err(|e| bad(e.to_string()))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| bad(e.to_string()))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(SigningKey {
        kid,
        algorithm,
        created: SystemTime::UNIX_EPOCH + Duration::from_secs(created),
        path: path.to_owned(),
        encoding,
        jwk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("autoheal-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_key_made_by_another_user_goes_to_the_directory_owner_or_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let dir = temp_dir("owner");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let me = fs::metadata(&dir).unwrap().uid();
        // The daemon's user owns the directory; keygen runs as someone else (root via sudo).
        let daemon_user = 65534;
        if me == 0 {
            std::os::unix::fs::chown(&dir, Some(daemon_user), Some(daemon_user)).unwrap();
            let key = KeyRing::generate(&dir, KeyAlgorithm::Es256, SystemTime::now()).unwrap();
            let meta = fs::metadata(&key.path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (daemon_user, daemon_user));
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            // A key directory keygen has to create (before the daemon's first start) goes to
            // the owner of the state directory above it, and so does its key.
            let fresh = dir.join("oidc");
            let key = KeyRing::generate(&fresh, KeyAlgorithm::Es256, SystemTime::now()).unwrap();
            for made in [&fresh, &key.path] {
                let meta = fs::metadata(made).unwrap();
                assert_eq!(
                    (meta.uid(), meta.gid()),
                    (daemon_user, daemon_user),
                    "{made:?}"
                );
            }
        } else {
            // Not root: the directory cannot be given away, so the test makes the key's
            // hand-over impossible the other way round and checks the refusal.
            let err = hand_to_directory_owner(Path::new("/"), &dir).unwrap_err();
            assert!(err.to_string().contains("sudo -u autoheal"), "{err}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_are_private_files_with_a_thumbprint_kid() {
        let dir = temp_dir("mode");
        let now = SystemTime::now();
        let key = KeyRing::generate(&dir, KeyAlgorithm::Es256, now).unwrap();
        let mode = fs::metadata(&key.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(key.kid.len(), 43, "base64url SHA-256: {}", key.kid);
        let again = KeyRing::load(&dir).unwrap();
        assert_eq!(again.all()[0].kid, key.kid, "the kid is derived, stable");
        assert!(!format!("{key:?}").contains("PRIVATE"));
        fs::set_permissions(&key.path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(KeyRing::load(&dir), Err(OidcError::BadKey { .. })));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotation_publishes_before_signing_and_retires_after_the_last_token() {
        let dir = temp_dir("rotation");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let old = KeyRing::generate(&dir, KeyAlgorithm::Es256, t0).unwrap();
        let t1 = t0 + Duration::from_secs(86400);
        let new = KeyRing::generate(&dir, KeyAlgorithm::Es256, t1).unwrap();
        let ring = KeyRing::load(&dir).unwrap();
        let kids = |at| {
            ring.published(at)
                .iter()
                .map(|k| k.kid.clone())
                .collect::<Vec<_>>()
        };
        // Just created: published at once, but the old key still signs.
        assert_eq!(ring.signing_key(t1).unwrap().kid, old.kid);
        assert_eq!(kids(t1), [old.kid.clone(), new.kid.clone()]);
        // After the lead, the new key signs; the old one stays for its tokens' lifetime.
        let t2 = t1 + PUBLISH_LEAD;
        assert_eq!(ring.signing_key(t2).unwrap().kid, new.kid);
        assert_eq!(
            kids(t2 + MAX_TOKEN_LIFETIME - Duration::from_secs(1)).len(),
            2
        );
        assert_eq!(kids(t2 + MAX_TOKEN_LIFETIME), vec![new.kid.clone()]);
        let _ = fs::remove_dir_all(&dir);
    }
}
