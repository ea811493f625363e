//! `crypto.md5`, `crypto.sha1`, `crypto.sha256` and `crypto.hmac.*` (RustCrypto): hex
//! digests of a string, as OPA computes them.

use hmac::{Hmac, Mac};
use regorus::Value;
use sha2::Digest;

use super::{string, Builtin};

pub const BUILTINS: &[Builtin] = &[
    ("crypto.md5", 1, |a| digest::<md5::Md5>(&a[0])),
    ("crypto.sha1", 1, |a| digest::<sha1::Sha1>(&a[0])),
    ("crypto.sha256", 1, |a| digest::<sha2::Sha256>(&a[0])),
    ("crypto.hmac.md5", 2, |a| hmac::<Hmac<md5::Md5>>(&a[0], &a[1])),
    ("crypto.hmac.sha1", 2, |a| hmac::<Hmac<sha1::Sha1>>(&a[0], &a[1])),
    ("crypto.hmac.sha256", 2, |a| hmac::<Hmac<sha2::Sha256>>(&a[0], &a[1])),
    ("crypto.hmac.sha512", 2, |a| hmac::<Hmac<sha2::Sha512>>(&a[0], &a[1])),
    ("crypto.hmac.equal", 2, equal),
];

fn digest<D: Digest>(x: &Value) -> Option<Value> {
    Some(Value::from(hex::encode(D::digest(string(x)?.as_bytes()))))
}

fn hmac<M: Mac + hmac::digest::KeyInit>(x: &Value, key: &Value) -> Option<Value> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(string(key)?.as_bytes()).ok()?;
    mac.update(string(x)?.as_bytes());
    Some(Value::from(hex::encode(mac.finalize().into_bytes())))
}

/// Compares two MACs in constant time (as OPA's `hmac.Equal`).
fn equal(a: &[Value]) -> Option<Value> {
    use subtle::ConstantTimeEq;
    let (x, y) = (string(&a[0])?.as_bytes(), string(&a[1])?.as_bytes());
    Some(Value::from(x.len() == y.len() && bool::from(x.ct_eq(y))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> Option<Value> {
        BUILTINS.iter().find(|(n, _, _)| *n == name).and_then(|(_, _, f)| f(args))
    }

    #[test]
    fn digests_and_macs_match_their_published_test_vectors() {
        assert_eq!(call("crypto.md5", &["".into()]), Some("d41d8cd98f00b204e9800998ecf8427e".into()));
        assert_eq!(call("crypto.sha1", &["abc".into()]), Some("a9993e364706816aba3e25717850c26c9cd0d89d".into()));
        // RFC 4231, test case 2.
        assert_eq!(
            call("crypto.hmac.sha256", &["what do ya want for nothing?".into(), "Jefe".into()]),
            Some("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".into())
        );
        assert_eq!(call("crypto.hmac.equal", &["ab".into(), "ab".into()]), Some(true.into()));
        assert_eq!(call("crypto.hmac.equal", &["ab".into(), "abc".into()]), Some(false.into()));
        assert_eq!(call("crypto.md5", &[Value::from(1)]), None, "not a string: undefined");
    }
}
