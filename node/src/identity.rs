//! The node's ed25519 identity, created on first start and kept in the data dir.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use libp2p_identity::{Keypair, PeerId};

use crate::fsutil;

/// File name of the identity key inside the data dir.
pub const IDENTITY_FILE: &str = "identity.key";

/// Why the identity could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing the key file failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The key file exists but does not hold a key. It is never overwritten silently,
    /// since that would change the node's id.
    #[error(
        "identity file {path} is corrupted ({reason}); move it away to create a new identity (the node id will change)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Loads the identity in `data_dir`, creating it (mode 0600) on first start.
///
/// # Errors
/// On I/O errors or a corrupted key file.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, IdentityError> {
    let path = data_dir.join(IDENTITY_FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            fsutil::write_atomic(&path, &bytes, 0o600).map_err(io)?;
            tracing::info!(peer_id = %PeerId::from(key.public()), path = %path.display(), "created a new node identity");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}
