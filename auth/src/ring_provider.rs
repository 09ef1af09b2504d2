//! A `jsonwebtoken` crypto provider on `ring`, the crypto library the Lambda zips already carry
//! (rustls on ring, no aws-lc): `jsonwebtoken` 10+ ships providers only for aws-lc-rs and
//! RustCrypto (whose `rsa` crate carries RUSTSEC-2023-0071), so we plug ring in ourselves.
//!
//! Only the two algorithms wsstack accepts exist here: RS256 and ES256. Every other algorithm,
//! HMAC included, is refused when the verifier is built, so a token can never be checked with
//! an algorithm outside that pair whatever its header says.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature as ring_sig;

/// The provider: RS256 and ES256 only.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(unsupported()),
        rsa_pub_components_from_public_key: |_| Err(unsupported()),
        ec_pub_components_from_private_key: |_, _| Err(unsupported()),
        ed_pub_components_from_private_key: |_, _| Err(unsupported()),
        compute_digest,
    },
};

/// Makes [`RING_PROVIDER`] the process's `jsonwebtoken` provider. Idempotent; every entry point
/// of this crate that signs or verifies calls it first.
pub fn install() {
    // Err means a provider is installed already: ours (an earlier call) or, if the process
    // chose another one itself, that one.
    let _ = RING_PROVIDER.install_default();
}

fn unsupported() -> Error {
    ErrorKind::UnsupportedAlgorithm.into()
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(unsupported()),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match (algorithm, key.family(), key.kind()) {
        (Algorithm::RS256, AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            Ok(Box::new(Rs256Verifier {
                n: n.clone(),
                e: e.clone(),
            }))
        }
        (Algorithm::ES256, AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            Ok(Box::new(Es256Verifier {
                point: point.clone(),
            }))
        }
        (Algorithm::RS256 | Algorithm::ES256, _, _) => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(unsupported()),
    }
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    match (algorithm, key.family()) {
        (Algorithm::ES256, AlgorithmFamily::Ec) => {
            let rng = SystemRandom::new();
            let pair = ring_sig::EcdsaKeyPair::from_pkcs8(
                &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                key.as_bytes(),
                &rng,
            )
            .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?;
            Ok(Box::new(Es256Signer { pair, rng }))
        }
        (Algorithm::RS256, AlgorithmFamily::Rsa) => {
            let pair = ring_sig::RsaKeyPair::from_der(key.as_bytes())
                .or_else(|_| ring_sig::RsaKeyPair::from_pkcs8(key.as_bytes()))
                .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?;
            Ok(Box::new(Rs256Signer {
                pair,
                rng: SystemRandom::new(),
            }))
        }
        (Algorithm::RS256 | Algorithm::ES256, _) => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(unsupported()),
    }
}

struct Rs256Verifier {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Rs256Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let key = ring_sig::RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        };
        // 2048 to 8192-bit moduli: ring refuses shorter keys, as it should.
        key.verify(&ring_sig::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

struct Es256Verifier {
    /// The uncompressed SEC1 point, 0x04 || x || y.
    point: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Es256Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        // JWS ES256 signatures are the fixed 64-byte r || s form (RFC 7518 section 3.4).
        ring_sig::UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(msg, sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Es256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

struct Es256Signer {
    pair: ring_sig::EcdsaKeyPair,
    rng: SystemRandom,
}

impl signature::Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.pair
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

struct Rs256Signer {
    pair: ring_sig::RsaKeyPair,
    rng: SystemRandom,
}

impl signature::Signer<Vec<u8>> for Rs256Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut out = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(&ring_sig::RSA_PKCS1_SHA256, &self.rng, msg, &mut out)
            .map_err(|_| signature::Error::new())?;
        Ok(out)
    }
}

impl JwtSigner for Rs256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_and_other_algorithms_get_no_verifier() {
        let secret = DecodingKey::from_secret(b"k");
        for alg in [
            Algorithm::HS256,
            Algorithm::HS384,
            Algorithm::PS256,
            Algorithm::EdDSA,
        ] {
            assert!(new_verifier(&alg, &secret).is_err(), "{alg:?}");
        }
    }

    #[test]
    fn a_key_of_the_wrong_family_gets_no_verifier() {
        let ec = DecodingKey::from_ec_components("AAAA", "AAAA").expect("components");
        assert!(new_verifier(&Algorithm::RS256, &ec).is_err());
        let rsa = DecodingKey::from_rsa_raw_components(&[1, 2], &[1, 0, 1]);
        assert!(new_verifier(&Algorithm::ES256, &rsa).is_err());
    }

    #[test]
    fn thumbprint_digests_have_their_lengths() {
        for (hash, len) in [
            (ThumbprintHash::SHA256, 32),
            (ThumbprintHash::SHA384, 48),
            (ThumbprintHash::SHA512, 64),
        ] {
            assert_eq!(compute_digest(b"abc", hash).expect("digest").len(), len);
        }
    }
}
