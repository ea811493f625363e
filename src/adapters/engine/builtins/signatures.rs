//! Signatures for the `io.jwt.*` builtins, as Go and jwx make and check them: RSA PKCS#1
//! v1.5 and PSS, ECDSA on P-256, P-384 and P-521, Ed25519 and HMAC (RustCrypto).

use hmac::{Hmac, Mac};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::jose::{Material, Private, Public};

/// Go, as OPA is built (Go 1.26), refuses RSA keys under 1,024 bits.
const RSA_MIN_BITS: usize = 1024;

/// The hash an algorithm names, by the length of its number.
fn digest(alg: &str, message: &[u8]) -> Option<Vec<u8>> {
    Some(match alg.get(2..)? {
        "256" => Sha256::digest(message).to_vec(),
        "384" => Sha384::digest(message).to_vec(),
        "512" => Sha512::digest(message).to_vec(),
        _ => return None,
    })
}

fn pkcs1v15(alg: &str) -> Option<Pkcs1v15Sign> {
    Some(match alg {
        "RS256" => Pkcs1v15Sign::new::<Sha256>(),
        "RS384" => Pkcs1v15Sign::new::<Sha384>(),
        "RS512" => Pkcs1v15Sign::new::<Sha512>(),
        _ => return None,
    })
}

fn pss(alg: &str, salt: usize) -> Option<Pss> {
    Some(match alg {
        "PS256" => Pss::new_with_salt::<Sha256>(salt),
        "PS384" => Pss::new_with_salt::<Sha384>(salt),
        "PS512" => Pss::new_with_salt::<Sha512>(salt),
        _ => return None,
    })
}

/// The salt length a PSS signature was made with, as Go's `PSSSaltLengthAuto` finds it:
/// the encoded message's data block, unmasked, is zeros, `0x01`, then the salt.
fn pss_salt_length(key: &RsaPublicKey, alg: &str, signature: &[u8]) -> Option<usize> {
    let k_len = key.size();
    if signature.len() != k_len {
        return None;
    }
    let m = BigUint::from_bytes_be(signature).modpow(key.e(), key.n()).to_bytes_be();
    let em_bits = key.n().bits() - 1;
    let em_len = em_bits.div_ceil(8);
    if m.len() > em_len {
        return None;
    }
    let em: Vec<u8> = std::iter::repeat_n(0, em_len - m.len()).chain(m).collect();
    let h_len = digest(alg, b"")?.len();
    let db_len = em_len.checked_sub(h_len + 1)?;
    if em.last() != Some(&0xBC) {
        return None;
    }
    let (masked, h) = (&em[..db_len], &em[db_len..db_len + h_len]);
    // MGF1 with the algorithm's hash.
    let mut mask = Vec::with_capacity(db_len + h_len);
    let mut counter = 0u32;
    while mask.len() < db_len {
        mask.extend(digest(alg, &[h, &counter.to_be_bytes()[..]].concat())?);
        counter += 1;
    }
    let mut db: Vec<u8> = masked.iter().zip(&mask).map(|(a, b)| a ^ b).collect();
    db[0] &= 0xFF >> (8 * em_len - em_bits);
    let separator = db.iter().position(|b| *b == 0x01)?;
    Some(db_len - separator - 1)
}

/// An ECDSA prehash no shorter than half the curve's field (RustCrypto's minimum); the
/// leading zeros keep its value, which is what Go's `ecdsa.Verify` reads.
fn prehash(digest: &[u8], field: usize) -> Vec<u8> {
    let mut out = vec![0; (field / 2 + 1).saturating_sub(digest.len())];
    out.extend_from_slice(digest);
    out
}

/// `r || s`, each half of `signature`, as fixed-size field elements.
fn scalars(signature: &[u8], size: usize, exact: bool) -> Option<Vec<u8>> {
    if exact && signature.len() != 2 * size {
        return None;
    }
    let (r, s) = signature.split_at(signature.len() / 2);
    let pad = |x: &[u8]| -> Option<Vec<u8>> {
        let x = &x[x.iter().take_while(|b| **b == 0).count()..];
        (x.len() <= size).then(|| std::iter::repeat_n(0, size - x.len()).chain(x.iter().copied()).collect())
    };
    Some([pad(r)?, pad(s)?].concat())
}

/// How an ECDSA signature is laid out: JWS's fixed-size `r || s` (jwx), or two halves of
/// any length (OPA's own `io.jwt.verify_es*`).
#[derive(Clone, Copy)]
pub enum EcLayout {
    Fixed,
    Halves,
}

/// Whether `signature` is `public`'s signature of `message` under `alg`. PSS signatures
/// are checked with the salt as long as the hash (`salt: None`, as jwx does) or any salt
/// length (`Some(())`, Go's `PSSSaltLengthAuto`, as OPA's `io.jwt.verify_ps*`).
pub fn verify_public(public: &Public, alg: &str, message: &[u8], signature: &[u8], layout: EcLayout, any_salt: bool) -> bool {
    let check = || -> Option<bool> {
        match (public, alg.get(..2)?) {
            (Public::Rsa(k), "RS") => {
                let hashed = digest(alg, message)?;
                Some(k.n().bits() >= RSA_MIN_BITS && k.verify(pkcs1v15(alg)?, &hashed, signature).is_ok())
            }
            (Public::Rsa(k), "PS") => {
                let hashed = digest(alg, message)?;
                if k.n().bits() < RSA_MIN_BITS {
                    return Some(false);
                }
                let h_len = hashed.len();
                if k.verify(pss(alg, h_len)?, &hashed, signature).is_ok() {
                    return Some(true);
                }
                if !any_salt {
                    return Some(false);
                }
                let salt = pss_salt_length(k, alg, signature)?;
                Some(salt != h_len && k.verify(pss(alg, salt)?, &hashed, signature).is_ok())
            }
            (Public::P256(k), "ES") => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                let sig = p256::ecdsa::Signature::from_slice(&scalars(signature, 32, matches!(layout, EcLayout::Fixed))?).ok()?;
                Some(k.verify_prehash(&prehash(&digest(alg, message)?, 32), &sig).is_ok())
            }
            (Public::P384(k), "ES") => {
                use p384::ecdsa::signature::hazmat::PrehashVerifier;
                let sig = p384::ecdsa::Signature::from_slice(&scalars(signature, 48, matches!(layout, EcLayout::Fixed))?).ok()?;
                Some(k.verify_prehash(&prehash(&digest(alg, message)?, 48), &sig).is_ok())
            }
            (Public::P521(k), "ES") => {
                use p521::ecdsa::signature::hazmat::PrehashVerifier;
                let sig = p521::ecdsa::Signature::from_slice(&scalars(signature, 66, matches!(layout, EcLayout::Fixed))?).ok()?;
                Some(k.verify_prehash(&prehash(&digest(alg, message)?, 66), &sig).is_ok())
            }
            (Public::Ed25519(k), "Ed") if alg == "EdDSA" => {
                use ed25519_dalek::Verifier;
                let sig = ed25519_dalek::Signature::from_slice(signature).ok()?;
                Some(k.verify(message, &sig).is_ok())
            }
            _ => Some(false),
        }
    };
    check().unwrap_or(false)
}

fn hmac_of(alg: &str, secret: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], message: &[u8]) -> Option<Vec<u8>> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(secret).ok()?;
        m.update(message);
        Some(m.finalize().into_bytes().to_vec())
    }
    match alg {
        "HS256" => mac::<Hmac<Sha256>>(secret, message),
        "HS384" => mac::<Hmac<Sha384>>(secret, message),
        "HS512" => mac::<Hmac<Sha512>>(secret, message),
        _ => None,
    }
}

/// jwx's `jwsbb.Verify`: any key material, the algorithm from the token's header.
pub fn verify(material: &Material, alg: &str, message: &[u8], signature: &[u8]) -> bool {
    match material {
        Material::Secret(secret) => hmac_of(alg, secret, message).is_some_and(|m| {
            use subtle::ConstantTimeEq;
            m.len() == signature.len() && bool::from(m.ct_eq(signature))
        }),
        Material::Public(p) => verify_public(p, alg, message, signature, EcLayout::Fixed, false),
        Material::Private(k) => verify_public(&k.public(), alg, message, signature, EcLayout::Fixed, false),
    }
}

/// jwx's `jwsbb.Sign` (deterministic for HMAC, RSA PKCS#1 v1.5 and Ed25519; randomised
/// for ECDSA and PSS, as in OPA).
pub fn sign(material: &Material, alg: &str, message: &[u8]) -> Option<Vec<u8>> {
    let mut rng = rand_core::OsRng;
    match material {
        Material::Secret(secret) => hmac_of(alg, secret, message),
        Material::Public(_) => None,
        Material::Private(key) => match (key.as_ref(), alg.get(..2)?) {
            (Private::Rsa(k), "RS") if k.n().bits() >= RSA_MIN_BITS => k.sign(pkcs1v15(alg)?, &digest(alg, message)?).ok(),
            (Private::Rsa(k), "PS") if k.n().bits() >= RSA_MIN_BITS => {
                let hashed = digest(alg, message)?;
                k.sign_with_rng(&mut rng, pss(alg, hashed.len())?, &hashed).ok()
            }
            (Private::P256(k), "ES") => {
                use p256::ecdsa::signature::hazmat::RandomizedPrehashSigner;
                let sig: p256::ecdsa::Signature = k.sign_prehash_with_rng(&mut rng, &prehash(&digest(alg, message)?, 32)).ok()?;
                Some(sig.to_bytes().to_vec())
            }
            (Private::P384(k), "ES") => {
                use p384::ecdsa::signature::hazmat::RandomizedPrehashSigner;
                let sig: p384::ecdsa::Signature = k.sign_prehash_with_rng(&mut rng, &prehash(&digest(alg, message)?, 48)).ok()?;
                Some(sig.to_bytes().to_vec())
            }
            (Private::P521(k), "ES") => {
                use p521::ecdsa::signature::hazmat::RandomizedPrehashSigner;
                let sig: p521::ecdsa::Signature = k.sign_prehash_with_rng(&mut rng, &prehash(&digest(alg, message)?, 66)).ok()?;
                Some(sig.to_bytes().to_vec())
            }
            (Private::Ed25519(k), "Ed") if alg == "EdDSA" => {
                use ed25519_dalek::Signer;
                Some(k.sign(message).to_bytes().to_vec())
            }
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPrivateKey;

    #[test]
    fn a_pss_signature_with_any_salt_verifies_where_go_detects_the_salt_and_jws_wants_the_hash_length() {
        let key = RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap();
        let public = Public::Rsa(key.to_public_key());
        let hashed = Sha256::digest(b"a.b");
        for salt in [0, 5, 32] {
            let sig = key.sign_with_rng(&mut rand_core::OsRng, Pss::new_with_salt::<Sha256>(salt), &hashed).unwrap();
            assert!(verify_public(&public, "PS256", b"a.b", &sig, EcLayout::Fixed, true), "salt {salt}");
            assert_eq!(verify_public(&public, "PS256", b"a.b", &sig, EcLayout::Fixed, false), salt == 32, "salt {salt}");
            assert!(!verify_public(&public, "PS256", b"a.c", &sig, EcLayout::Fixed, true));
        }
        let small = RsaPrivateKey::new(&mut rand_core::OsRng, 768).unwrap();
        let sig = small.sign(Pkcs1v15Sign::new::<Sha256>(), &hashed).unwrap();
        assert!(!verify_public(&Public::Rsa(small.to_public_key()), "RS256", b"a.b", &sig, EcLayout::Fixed, false), "under 1,024 bits");
    }
}
