//! The TLS credentials that carry a node's ed25519 key: a self-signed X.509 certificate,
//! the PKCS#8 form of the private key, and the key read back out of a peer's certificate.
//!
//! Why by hand, against the project's preference for well-kept crates: the certificate is
//! one fixed template (RFC 5280 with RFC 8410's Ed25519 algorithm identifiers, no
//! extensions), and rcgen, x509-cert and the `der`/`time` crates behind them cost about
//! 100 KB of the 5,000,000-byte budget of the router builds. Nothing validates these
//! certificates as a chain: peers are authenticated by their key alone (PROTOCOL.md §2), so
//! the parser only has to find the subject key, and it refuses anything but Ed25519.
//! Compatibility both ways is tested against rcgen and x509-cert (dev-dependencies).

/// RFC 8410's SubjectPublicKeyInfo for Ed25519: this prefix, then the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// RFC 8410's OneAsymmetricKey (version 1) for Ed25519: this prefix, then the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// AlgorithmIdentifier { id-Ed25519 } (no parameters).
const ED25519_ALGORITHM: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/// Name: CN=harddrive-party.
const NAME: &[u8] = b"\x30\x1a\x31\x18\x30\x16\x06\x03\x55\x04\x03\x0c\x0fharddrive-party";
/// Validity: from 1975-01-01 (UTCTime) to 9999-12-31 23:59:59 (GeneralizedTime, RFC 5280's
/// "no well-defined expiration date"): a peer's clock never makes its friends unreachable.
const VALIDITY: &[u8] = b"\x30\x20\x17\x0d750101000000Z\x18\x0f99991231235959Z";

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
/// `[0] EXPLICIT`: the version field of a TBSCertificate.
const VERSION_TAG: u8 = 0xa0;

/// DER tag-length-value; lengths up to 65,535 bytes, far above anything made here.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.push(tag);
    match content.len() {
        len @ 0..=0x7f => out.push(len as u8),
        len @ 0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        len => {
            let len = u16::try_from(len).unwrap_or(u16::MAX);
            out.push(0x82);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

/// The SubjectPublicKeyInfo DER of an Ed25519 key.
pub fn ed25519_spki(public_key: &[u8; 32]) -> [u8; 44] {
    let mut spki = [0u8; 44];
    spki[..12].copy_from_slice(&ED25519_SPKI_PREFIX);
    spki[12..].copy_from_slice(public_key);
    spki
}

/// The PKCS#8 DER of an Ed25519 private key (its 32-byte seed), as TLS libraries load it.
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> [u8; 48] {
    let mut der = [0u8; 48];
    der[..16].copy_from_slice(&ED25519_PKCS8_PREFIX);
    der[16..].copy_from_slice(seed);
    der
}

/// A self-signed X.509 v3 certificate for `public_key`, signed by `sign` (an Ed25519
/// signature over the bytes it is given). `serial` makes each start's certificate unique.
pub fn self_signed_certificate(
    public_key: &[u8; 32],
    serial: [u8; 16],
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Vec<u8> {
    let mut serial = serial;
    // A DER INTEGER is signed; a clear top bit keeps the serial positive and 16 bytes long.
    serial[0] &= 0x7f;
    let mut tbs_fields = tlv(VERSION_TAG, &tlv(INTEGER, &[2]));
    tbs_fields.extend(tlv(INTEGER, &serial));
    tbs_fields.extend_from_slice(&ED25519_ALGORITHM);
    tbs_fields.extend_from_slice(NAME);
    tbs_fields.extend_from_slice(VALIDITY);
    tbs_fields.extend_from_slice(NAME);
    tbs_fields.extend_from_slice(&ed25519_spki(public_key));
    let tbs = tlv(SEQUENCE, &tbs_fields);
    let signature = sign(&tbs);
    let mut signature_bits = Vec::with_capacity(65);
    signature_bits.push(0); // no unused bits
    signature_bits.extend_from_slice(&signature);
    let mut certificate = tbs;
    certificate.extend_from_slice(&ED25519_ALGORITHM);
    certificate.extend(tlv(BIT_STRING, &signature_bits));
    tlv(SEQUENCE, &certificate)
}

/// Reads one DER element at the start of `input`: (tag, content, rest). Definite lengths
/// only, in their shortest form up to 4 bytes; anything else is refused.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().try_fold(0usize, |acc, &b| {
            acc.checked_mul(256)?.checked_add(usize::from(b))
        })?
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// The Ed25519 key in a peer's X.509 certificate (ours or one made by rcgen, as earlier
/// releases did), or None for anything else: another key type, or not a certificate.
pub fn ed25519_key_from_certificate(der: &[u8]) -> Option<[u8; 32]> {
    let (SEQUENCE, certificate, _) = read_tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = read_tlv(certificate)? else {
        return None;
    };
    let mut fields = tbs;
    if fields.first() == Some(&VERSION_TAG) {
        fields = read_tlv(fields)?.2;
    }
    // serialNumber, signature, issuer, validity, subject; then subjectPublicKeyInfo.
    for _ in 0..5 {
        fields = read_tlv(fields)?.2;
    }
    let (SEQUENCE, _, after) = read_tlv(fields)? else {
        return None;
    };
    let spki = &fields[..fields.len() - after.len()];
    if spki.len() != 44 || spki[..12] != ED25519_SPKI_PREFIX {
        return None;
    }
    spki[12..].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_signature(message: &[u8]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        for (i, byte) in message.iter().enumerate() {
            signature[i % 64] ^= byte;
        }
        signature
    }

    #[test]
    fn the_key_is_read_back_from_our_certificate() {
        let key = [7u8; 32];
        let cert = self_signed_certificate(&key, [0xff; 16], fake_signature);
        assert_eq!(ed25519_key_from_certificate(&cert), Some(key));
        let other = self_signed_certificate(&key, [1; 16], fake_signature);
        assert_ne!(
            cert, other,
            "the serial makes each start's certificate unique"
        );
    }

    #[test]
    fn the_signature_covers_exactly_the_tbs_certificate() {
        let mut signed = Vec::new();
        let cert = self_signed_certificate(&[3u8; 32], [5; 16], |tbs| {
            signed = tbs.to_vec();
            [0x55; 64]
        });
        let (_, body, _) = read_tlv(&cert).unwrap();
        assert!(body.starts_with(&signed));
        assert!(cert.ends_with(&[0x55; 64]));
    }

    #[test]
    fn anything_else_is_refused() {
        let key = [7u8; 32];
        let cert = self_signed_certificate(&key, [9; 16], fake_signature);
        for cut in 0..cert.len() {
            assert_eq!(
                ed25519_key_from_certificate(&cert[..cut]),
                None,
                "cut at {cut}"
            );
        }
        // Another algorithm in the key's identifier (X25519's OID, 1.3.101.110).
        let spki_at = cert
            .windows(12)
            .position(|w| w == ED25519_SPKI_PREFIX)
            .unwrap();
        let mut other_algorithm = cert.clone();
        other_algorithm[spki_at + 8] = 0x6e;
        assert_eq!(ed25519_key_from_certificate(&other_algorithm), None);
        assert_eq!(ed25519_key_from_certificate(b""), None);
        assert_eq!(
            ed25519_key_from_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(ed25519_key_from_certificate(&[0x30, 0x80]), None);
    }

    #[test]
    fn lengths_use_the_shortest_form() {
        assert_eq!(tlv(4, &[1; 3])[..2], [4, 3]);
        assert_eq!(tlv(4, &[1; 200])[..3], [4, 0x81, 200]);
        assert_eq!(tlv(4, &[1; 300])[..4], [4, 0x82, 1, 44]);
        let long = tlv(4, &[1; 300]);
        assert_eq!(
            read_tlv(&long).map(|(t, c, r)| (t, c.len(), r.len())),
            Some((4, 300, 0))
        );
    }

    #[test]
    fn key_encodings_follow_rfc_8410() {
        let spki = ed25519_spki(&[1; 32]);
        assert_eq!(
            read_tlv(&spki).map(|(t, c, r)| (t, c.len(), r.len())),
            Some((0x30, 42, 0))
        );
        let pkcs8 = ed25519_pkcs8(&[2; 32]);
        assert_eq!(
            read_tlv(&pkcs8).map(|(t, c, r)| (t, c.len(), r.len())),
            Some((0x30, 46, 0))
        );
        assert_eq!(&pkcs8[16..], &[2; 32]);
    }
}
