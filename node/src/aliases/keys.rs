//! Publisher keys: ed25519 key pairs in the data dir's `keys/` (one file each, mode
//! 0600), named by a local petname; the namespace a key owns is its public half.

use super::*;

/// Key names: the same rule as alias names.
pub(super) fn check_key_name(name: &str) -> Result<(), AliasOpError> {
    Alias::new(Namespace([0; 32]), name, "x")
        .map(|_| ())
        .map_err(|_| {
            AliasOpError::Invalid(AliasError::Name(format!(
                "key name \"{name}\" must be 1 to 64 characters of a-z, 0-9, '-', '_', '.'"
            )))
        })
}

pub(super) fn load_keys(dir: &Path) -> std::io::Result<Vec<(String, ed25519::Keypair)>> {
    let mut keys = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".key"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        let mut secret = [0u8; 32];
        let key = hex::decode_to_slice(text.trim(), &mut secret)
            .ok()
            .and_then(|()| ed25519::SecretKey::try_from_bytes(&mut secret).ok())
            .map(ed25519::Keypair::from);
        match key {
            Some(k) => keys.push((name.to_owned(), k)),
            None => {
                tracing::error!(path = %path.display(), "publisher key file is corrupted; ignored (move it away)")
            }
        }
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keys)
}

/// `message` signed with a publisher key (an ed25519 signature is always 64 bytes).
pub(crate) fn sign64(key: &ed25519::Keypair, message: &[u8]) -> [u8; 64] {
    key.sign(message).try_into().unwrap_or([0; 64])
}

/// A libp2p ed25519 keypair as an ed25519-dalek signing key.
pub(crate) fn signing_key(key: &ed25519::Keypair) -> Option<ed25519_dalek::SigningKey> {
    let secret = key.secret();
    let bytes: [u8; 32] = secret.as_ref().try_into().ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&bytes))
}

impl Aliases {
    /// Creates a key named `name`.
    ///
    /// # Errors
    /// A bad or taken name, or I/O.
    pub fn new_key(&self, name: &str) -> Result<KeyInfo, AliasOpError> {
        check_key_name(name)?;
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if keys.iter().any(|(n, _)| n == name) {
            return Err(AliasOpError::KeyExists(name.to_owned()));
        }
        let dir = self.data_dir.join(KEYS_DIR);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.key"));
        if path.exists() {
            return Err(AliasOpError::KeyExists(name.to_owned()));
        }
        let key = ed25519::Keypair::generate();
        let text = format!("{}\n", hex::encode(key.secret().as_ref()));
        fsutil::write_atomic(&path, text.as_bytes(), 0o600)?;
        let info = KeyInfo {
            name: name.to_owned(),
            namespace: Namespace(key.public().to_bytes()).to_string(),
        };
        tracing::info!(name, namespace = %info.namespace, "created a publisher key");
        keys.push((name.to_owned(), key));
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(info)
    }

    /// The keys on this node.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, k)| KeyInfo {
                name: name.clone(),
                namespace: Namespace(k.public().to_bytes()).to_string(),
            })
            .collect()
    }

    /// The publisher keys held here, as signing keys.
    pub(crate) fn secret_keys(&self) -> Vec<ed25519_dalek::SigningKey> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|(_, k)| signing_key(k))
            .collect()
    }

    pub(crate) fn signer(&self, ns: &Namespace) -> Result<ed25519::Keypair, AliasOpError> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(_, k)| k.public().to_bytes() == ns.0)
            .map(|(_, k)| k.clone())
            .ok_or(AliasOpError::NotOwner(*ns))
    }
}
