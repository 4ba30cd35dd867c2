//! The API's bearer token: from `AUTOHEAL_API_TOKEN`, else from `server.api_token_file`,
//! else generated into that file (mode 0600) — and the log says where, never what.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::config::Secret;

/// The environment variable that, when set, is the token.
pub const TOKEN_ENV: &str = "AUTOHEAL_API_TOKEN";
/// Tokens shorter than this are refused: they could be guessed.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the API token in {source_name} is shorter than {MIN_TOKEN_LEN} characters; use a long random value"
    )]
    TooShort { source_name: String },
    #[error("cannot read the API token file {path}: {error}")]
    Unreadable { path: String, error: std::io::Error },
    #[error(
        "the API token file {path} has mode {mode:o}: others on this host could read the token and start sandboxes with AWS credentials. Run: chmod 600 {path}"
    )]
    TooOpen { path: String, mode: u32 },
    #[error(
        "the API token in {source_name} holds a character that cannot go in an HTTP header (control characters, non-ASCII); generate a new one, e.g. openssl rand -hex 32"
    )]
    NotAHeader { source_name: String },
    #[error(
        "cannot create the API token file {path}: {error} (create its directory, or set AUTOHEAL_API_TOKEN)"
    )]
    Uncreatable { path: String, error: std::io::Error },
}

/// Loads (or creates) the token.
pub fn load_or_create(file: &Path) -> Result<Secret, TokenError> {
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        return checked(token.trim().to_owned(), TOKEN_ENV);
    }
    let path = file.display().to_string();
    match std::fs::read_to_string(file) {
        Ok(text) => {
            refuse_if_open(file)?;
            checked(text.trim().to_owned(), &path)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let token = generate().map_err(|error| TokenError::Uncreatable {
                path: path.clone(),
                error,
            })?;
            write_private(file, &token).map_err(|error| TokenError::Uncreatable {
                path: path.clone(),
                error,
            })?;
            tracing::info!(file = %path, "generated a new API token (mode 0600); clients read it from there");
            Ok(Secret::new(token))
        }
        Err(error) => Err(TokenError::Unreadable { path, error }),
    }
}

fn checked(token: String, source_name: &str) -> Result<Secret, TokenError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort {
            source_name: source_name.to_owned(),
        });
    }
    header_safe(token, source_name)
}

/// A token is sent as `Authorization: Bearer <token>`: visible ASCII only.
fn header_safe(token: String, source_name: &str) -> Result<Secret, TokenError> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotAHeader {
            source_name: source_name.to_owned(),
        });
    }
    Ok(Secret::new(token))
}

/// The token file must be the daemon's alone, as the OIDC keys are.
fn refuse_if_open(file: &Path) -> Result<(), TokenError> {
    let mode = std::fs::metadata(file)
        .map_err(|error| TokenError::Unreadable {
            path: file.display().to_string(),
            error,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(TokenError::TooOpen {
            path: file.display().to_string(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

/// 32 bytes from the kernel's CSPRNG, hex-encoded.
fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(file: &Path, token: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    handle.write_all(token.as_bytes())?;
    handle.write_all(b"\n")?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

/// Reads the token as a client (`autoheal sandbox run`): the variable, else the file.
/// A token that cannot go in a header is refused here, with what to do, not sent.
pub fn read_for_client(file: &Path) -> Result<Secret, TokenError> {
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        return header_safe(token.trim().to_owned(), TOKEN_ENV);
    }
    let text = std::fs::read_to_string(file).map_err(|error| TokenError::Unreadable {
        path: file.display().to_string(),
        error,
    })?;
    header_safe(text.trim().to_owned(), &file.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("autoheal-token-{name}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let path = temp_file("open", "0123456789abcdef0123456789abcdef\n", 0o644);
        let err = load_or_create(&path).unwrap_err();
        assert!(
            matches!(err, TokenError::TooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_or_create(&path).is_ok());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_token_with_a_control_character_is_refused_not_sent() {
        let path = temp_file("control", "0123456789abcdef\u{7}0123456789abcdef", 0o600);
        assert!(matches!(
            read_for_client(&path),
            Err(TokenError::NotAHeader { .. })
        ));
        assert!(matches!(
            load_or_create(&path),
            Err(TokenError::NotAHeader { .. })
        ));
        let _ = std::fs::remove_file(&path);
    }
}
