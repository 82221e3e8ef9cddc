//! The node's long-lived ed25519 identity, the human-readable peer name derived from it,
//! and the per-start TLS certificate bound to it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use harddrive_party_core::certificate;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub use harddrive_party_core::peer_name::{peer_name, PublicKey};

const KEY_FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read identity key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write identity key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("identity key {0} is damaged (expected 32 bytes); restore it from a backup or move it aside to become a new peer")]
    Damaged(PathBuf),
    #[error("no randomness available from the operating system: {0}")]
    Random(String),
}

pub struct Identity {
    signing_key: SigningKey,
    pub public_key: PublicKey,
    pub name: String,
}

impl Identity {
    /// Loads `<storage>/identity.key`, creating it (mode 0600) on first start.
    pub fn load_or_create(storage_dir: &Path) -> Result<Self, IdentityError> {
        let path = storage_dir.join(KEY_FILE);
        let seed: [u8; 32] = match fs::read(&path) {
            Ok(bytes) => bytes
                .as_slice()
                .try_into()
                .map_err(|_| IdentityError::Damaged(path.clone()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed = random_bytes::<32>()?;
                write_private_file(&path, &seed).map_err(|source| IdentityError::Write {
                    path: path.clone(),
                    source,
                })?;
                seed
            }
            Err(source) => return Err(IdentityError::Read { path, source }),
        };
        // Repair a too-open mode left by an earlier copy or restore.
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        Ok(Self::from_seed(seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing_key = SigningKey::from_bytes(&seed);
        let public_key = signing_key.verifying_key().to_bytes();
        Self {
            signing_key,
            public_key,
            name: peer_name(&public_key),
        }
    }

    /// A self-signed certificate carrying our ed25519 key. A fresh random serial each start
    /// lets peers tell a restarted process from a duplicate connection of the same process.
    pub fn tls_certificate(
        &self,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), IdentityError> {
        let serial = random_bytes::<16>()?;
        let cert = certificate::self_signed_certificate(&self.public_key, serial, |tbs| {
            self.signing_key.sign(tbs).to_bytes()
        });
        let pkcs8 = certificate::ed25519_pkcs8(&self.signing_key.to_bytes());
        Ok((
            CertificateDer::from(cert),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec())),
        ))
    }
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| IdentityError::Random(e.to_string()))?;
    Ok(buf)
}

/// Writes a file readable only by its owner, atomically (temp file + rename).
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Extracts the ed25519 public key from a peer's X.509 certificate, refusing any other key type.
pub fn public_key_from_certificate(der: &[u8]) -> Option<PublicKey> {
    certificate::ed25519_key_from_certificate(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_deterministic_and_uses_key_suffix() {
        let mut key = [0u8; 32];
        key[0] = 7;
        key[1] = 64 + 46;
        key[2] = 0xab;
        key[3] = 0x01;
        assert_eq!(peer_name(&key), "CalmOtterab0100");
        key[3] = 0x02;
        assert_eq!(peer_name(&key), "CalmOtterab0200");
    }

    #[test]
    fn key_is_created_once_with_private_mode_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let second = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key, second.public_key);
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn damaged_key_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Damaged(_))
        ));
    }

    #[test]
    fn certificate_carries_our_key_and_differs_per_start() {
        let id = Identity::from_seed([9u8; 32]);
        let (a, _) = id.tls_certificate().unwrap();
        let (b, _) = id.tls_certificate().unwrap();
        assert_eq!(public_key_from_certificate(&a), Some(id.public_key));
        assert_ne!(a.as_ref(), b.as_ref());
        assert_eq!(public_key_from_certificate(b"not a certificate"), None);
    }

    /// Peers of earlier releases parse certificates with x509-cert and check nothing but the
    /// key; ours must read as a well-formed certificate there, with a valid self-signature.
    #[test]
    fn a_full_x509_parser_reads_our_certificate() {
        use ed25519_dalek::Verifier;
        use x509_cert::der::{Decode, Encode};
        let id = Identity::from_seed([4u8; 32]);
        let (der, _) = id.tls_certificate().unwrap();
        let cert = x509_cert::Certificate::from_der(&der).expect("a well-formed certificate");
        let spki = &cert.tbs_certificate.subject_public_key_info;
        assert_eq!(spki.subject_public_key.raw_bytes(), &id.public_key[..]);
        assert_eq!(cert.tbs_certificate.version, x509_cert::Version::V3);
        let signature: [u8; 64] = cert.signature.raw_bytes().try_into().unwrap();
        let tbs = cert.tbs_certificate.to_der().unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&id.public_key)
            .unwrap()
            .verify(&tbs, &ed25519_dalek::Signature::from_bytes(&signature))
            .expect("self-signed by the node's key");
    }

    /// Earlier releases presented rcgen's certificates; their keys must still be read.
    #[test]
    fn certificates_of_earlier_releases_are_read() {
        let id = Identity::from_seed([5u8; 32]);
        let pkcs8 = certificate::ed25519_pkcs8(&id.signing_key.to_bytes());
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.to_vec()),
            &rcgen::PKCS_ED25519,
        )
        .unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["harddrive-party".into()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x81; 16]));
        let old = params.self_signed(&key_pair).unwrap();
        assert_eq!(public_key_from_certificate(old.der()), Some(id.public_key));
    }
}
