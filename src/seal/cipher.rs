//! AES-256-GCM, the one cipher of `seal`: data keys wrapped under a key-encryption
//! key, and an event's personal fields sealed under its subject's data key.
//!
//! Every ciphertext is `nonce ‖ ciphertext ‖ tag` with a fresh random 96-bit nonce.
//! A data key seals at most a few thousand events in any realistic life (one
//! reporter's reports), far below the 2^32 random-nonce bound NIST SP 800-38D sets for
//! one key. The associated data binds each ciphertext to where it belongs, so a sealed
//! field copied onto another event, or a wrapped key moved to another id, fails to
//! open instead of reading as someone else's data.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes in an AES-256 key.
pub const KEY_LEN: usize = 32;

/// What failed, without saying more than that: the caller names the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("the system's random number generator failed")]
    Random,
    #[error("the ciphertext is malformed or was altered, or belongs elsewhere")]
    Open,
}

/// A 256-bit AES-GCM key.
pub struct Key(LessSafeKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        // Cannot fail: AES-256-GCM takes exactly KEY_LEN bytes.
        Self(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte key")))
    }

    /// Encrypts `plain`, binding `aad`; returns nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| CipherError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut body = out.split_off(NONCE_LEN);
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .map_err(|_| CipherError::Random)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypts what [`Key::seal`] made with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(CipherError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Open)?;
        let mut body = body.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(aad), &mut body).map_err(|_| CipherError::Open)?;
        Ok(plain.to_vec())
    }
}

/// `n` random bytes from the system's generator.
pub fn random<const N: usize>() -> Result<[u8; N], CipherError> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).map_err(|_| CipherError::Random)?;
    Ok(bytes)
}

/// Unpadded base64url, the text form of every ciphertext in a table or file.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode(text: &str) -> Result<Vec<u8>, CipherError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| CipherError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key_and_associated_data() {
        let key = Key::from_bytes(&[7; KEY_LEN]);
        let sealed = key.seal(b"event 1/2", b"crew").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 4 + 16);
        assert_eq!(key.open(b"event 1/2", &sealed).unwrap(), b"crew");
        assert_ne!(key.seal(b"event 1/2", b"crew").unwrap(), sealed, "a fresh nonce every time");
        assert_eq!(key.open(b"event 1/3", &sealed), Err(CipherError::Open), "moved to another event");
        assert_eq!(Key::from_bytes(&[8; KEY_LEN]).open(b"event 1/2", &sealed), Err(CipherError::Open));
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN] ^= 1;
        assert_eq!(key.open(b"event 1/2", &flipped), Err(CipherError::Open), "altered ciphertext");
        assert_eq!(key.open(b"event 1/2", &sealed[..20]), Err(CipherError::Open), "truncated");
        assert_eq!(decode(&encode(&sealed)).unwrap(), sealed);
        assert_eq!(decode("not base64!"), Err(CipherError::Open));
    }
}
