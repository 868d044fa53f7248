//! The API token: 32 random bytes as hex, made on first start and kept in the data
//! dir (`api-token`, mode 0600), where the CLI and the SDK client on the same machine
//! read it. A request that needs it sends `Authorization: Bearer <token>`.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// File name of the token inside the data dir.
pub const TOKEN_FILE: &str = kith_sdk::client::TOKEN_FILE;

/// Why the token could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Reading or writing the file failed.
    #[error("API token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file exists but does not hold a token.
    #[error(
        "API token file {path} does not hold a token (64 hex digits); delete it to make a new one"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
    /// The system has no randomness to offer.
    #[error("cannot make an API token: no randomness ({0})")]
    Random(String),
}

/// The token in `data_dir`, made (mode 0600) on first start.
///
/// # Errors
/// See [`TokenError`].
pub fn load_or_create(data_dir: &Path) -> Result<String, TokenError> {
    let path = data_dir.join(TOKEN_FILE);
    let io = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(token.to_owned())
            } else {
                Err(TokenError::Corrupt { path })
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
            let token = hex::encode(bytes);
            fsutil::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600).map_err(io)?;
            tracing::info!(path = %path.display(), "created the API token");
            Ok(token)
        }
        Err(e) => Err(io(e)),
    }
}

/// True if and only if `given` is `token`, compared in time that does not depend on
/// where they differ.
pub(crate) fn matches(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
