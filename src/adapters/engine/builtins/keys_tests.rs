//! Unit tests of `keys`, against what OPA v1.20.2 answers for the same keys.

use super::*;

const RSA: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIICWwIBAAKBgQCikgzi319OJJDNnijDmmCejnvJ1voBR+UpdIAyWoOhw4J+3oyR\nf94yA1btI2Erq7GYqkz+RUKNateINwvx8KKlJlvNGs6nVGMJl6aCMZ/rioitWgOn\nNpTpV3C6Sxilyde+UK3QvQ6uEWt9Ia624bmeFlSWFgGF1nnFTYn7JWMQWQIDAQAB\nAoGAQU8bDileSC44XeIjzjC+j/P9luBeHxWa4kSDG7dxGhNI4V7Wab1MrhrZWPrV\nlo2rEwGXXK7GRbmeTIKQselR7RKvZzY/H7IlJJplhZ/zoFWFUeQVmG+C+LTf+44L\nrgQHc1to/r/ERgShelFIt7xIfZOHuxXle2kMUKlhizTlc+ECQQDTezwn8x6rhA74\n4XiYiejwpWXgJGARkKnZX4kKKYF2JxKbvuRoBWDnM7mMftPgnv/8i7/+0Ui8VhXv\nkicyoTWvAkEAxMsAIWQSVPf2CQHeD7NLZkJrZoILRqpmnwrjLHu+MbiwWKJvyUzD\n3Ed8xNdulcEktmXTZB16pYm55A2QXaGkdwJAfRJJ/np7bgZ48Fowf044lHHNMWVx\n55F90g/9NSRc62qqR6/610YvDC18FApB9nsye8KOtv5BHRlwebIfOoM7AwJAVa2g\nJ+l+xbmTR8alXKaN/D6MrfuOVzzXIwVFdNeHLfSf6mcGTlj6qQwCuVymC9MkXbkl\neOAQxsOYyD5TjUBT7wJAZYCRMVxCTA5IoeA7NzwSQ5vn7aieb2mYOrvobYRZeC+9\n6C8z9c9bmsnVBTp8lMX4QEgutEmwYy2NCzaGN9ku0A==\n-----END RSA PRIVATE KEY-----\n";
const EC: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIEXz5oEPCJSc4Ka3xaRO/i72sTdhHt6MG2LKdPuAkMxtoAoGCCqGSM49\nAwEHoUQDQgAEnZGHtQ3OuFOQQX3xND7PVbtzAAePHv4rZ4kkYv7ebAR3fIdl8+Qg\nRVGTVXmISx+By9Twua5esoWkZKV8qzA0sg==\n-----END EC PRIVATE KEY-----\n";
const ED25519: &str =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIO0NtGu6BMhni83WsNbF55lgpSxZkTmkG+2tZHvisO+4\n-----END PRIVATE KEY-----\n";

fn json(s: &str) -> regorus::Value {
    regorus::Value::from_json_str(s).unwrap()
}

#[test]
fn parse_rsa_private_key_answers_the_first_key_as_the_jwk_opa_answers() {
    let want = json(
        r#"{"d": "QU8bDileSC44XeIjzjC-j_P9luBeHxWa4kSDG7dxGhNI4V7Wab1MrhrZWPrVlo2rEwGXXK7GRbmeTIKQselR7RKvZzY_H7IlJJplhZ_zoFWFUeQVmG-C-LTf-44LrgQHc1to_r_ERgShelFIt7xIfZOHuxXle2kMUKlhizTlc-E", "dp": "fRJJ_np7bgZ48Fowf044lHHNMWVx55F90g_9NSRc62qqR6_610YvDC18FApB9nsye8KOtv5BHRlwebIfOoM7Aw", "dq": "Va2gJ-l-xbmTR8alXKaN_D6MrfuOVzzXIwVFdNeHLfSf6mcGTlj6qQwCuVymC9MkXbkleOAQxsOYyD5TjUBT7w", "e": "AQAB", "kty": "RSA", "n": "opIM4t9fTiSQzZ4ow5pgno57ydb6AUflKXSAMlqDocOCft6MkX_eMgNW7SNhK6uxmKpM_kVCjWrXiDcL8fCipSZbzRrOp1RjCZemgjGf64qIrVoDpzaU6VdwuksYpcnXvlCt0L0OrhFrfSGutuG5nhZUlhYBhdZ5xU2J-yVjEFk", "p": "03s8J_Meq4QO-OF4mIno8KVl4CRgEZCp2V-JCimBdicSm77kaAVg5zO5jH7T4J7__Iu__tFIvFYV75InMqE1rw", "q": "xMsAIWQSVPf2CQHeD7NLZkJrZoILRqpmnwrjLHu-MbiwWKJvyUzD3Ed8xNdulcEktmXTZB16pYm55A2QXaGkdw", "qi": "ZYCRMVxCTA5IoeA7NzwSQ5vn7aieb2mYOrvobYRZeC-96C8z9c9bmsnVBTp8lMX4QEgutEmwYy2NCzaGN9ku0A"}"#,
    );
    assert_eq!(parse_rsa_private_key(&RSA.into()), Some(want.clone()));
    let b64 = STANDARD.encode(RSA);
    assert_eq!(parse_rsa_private_key(&b64.as_str().into()), Some(want), "base64 of the PEM data");
    assert_eq!(
        parse_rsa_private_key(&EC.into()),
        Some(json(
            r#"{"crv": "P-256", "d": "RfPmgQ8IlJzgprfFpE7-LvaxN2Ee3owbYsp0-4CQzG0", "kty": "EC", "x": "nZGHtQ3OuFOQQX3xND7PVbtzAAePHv4rZ4kkYv7ebAQ", "y": "d3yHZfPkIEVRk1V5iEsfgcvU8LmuXrKFpGSlfKswNLI"}"#
        ))
    );
    assert_eq!(
        parse_rsa_private_key(&ED25519.into()),
        Some(json(
            r#"{"crv": "Ed25519", "d": "7Q20a7oEyGeLzdaw1sXnmWClLFmROaQb7a1ke-Kw77g", "kty": "OKP", "x": "vlocovAJIFfare-x0uy547TTNCS4HYWY0VjaY_5iX-Q"}"#
        ))
    );
    assert_eq!(parse_rsa_private_key(&"-----BEGIN nothing".into()), Some(regorus::Value::Null), "no key: null");
}

#[test]
fn parse_rsa_private_key_of_bad_data_is_undefined_as_opas_error() {
    assert_eq!(parse_rsa_private_key(&"invalid".into()), None, "illegal base64");
    assert_eq!(parse_rsa_private_key(&"".into()), None, "empty");
    assert_eq!(parse_rsa_private_key(&regorus::Value::from(1)), None);
    // A key whose CRT coefficient was altered: Go's validation refuses it.
    let der = STANDARD.decode(RSA.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let mut key = rsa::pkcs1::RsaPrivateKey::from_der(&der).unwrap();
    let mut coefficient = key.coefficient.as_bytes().to_vec();
    coefficient[10] ^= 1;
    key.coefficient = rsa::pkcs1::UintRef::new(&coefficient).unwrap();
    assert!(pkcs1(&rsa::pkcs8::der::Encode::to_der(&key).unwrap()).is_err());
    assert!(pkcs1(&der).is_ok());
}

#[test]
fn parse_private_keys_answers_every_key_as_go_marshals_it() {
    let keys = parse_private_keys(&format!("{RSA}junk\n{EC}").as_str().into()).unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["N"], regorus::Value::from_numeric_string("114160893824493851583430925459494964136670793944323715152970131101242195140149987718166725574336449695629765318045114662356249469966431429306291680445808379927684248693012270400466900355514257113595301506609772032608244973753577463161972460769328974073612387561210295278055074134852152210227278259591865110617").unwrap(), "exact, as Go's big.Int");
    assert_eq!(keys[0]["E"], regorus::Value::from(65537u64));
    assert_eq!(keys[0]["Precomputed"]["CRTValues"], json("[]"));
    assert_eq!(keys[0]["Primes"][1], regorus::Value::from_numeric_string("10306884193937991616247159835967968881186158637270923271188770658022219910648239646968775304301317713354292019751789274973371402073664938464068191085765751").unwrap());
    assert_eq!(keys[1]["Curve"], json("{}"));
    assert_eq!(
        keys[1]["D"],
        regorus::Value::from_numeric_string("31640521270062624277661605532115165111333853844707168661062462440837137615981").unwrap()
    );
    assert_eq!(
        parse_private_keys(&ED25519.into()),
        Some(json(r#"["7Q20a7oEyGeLzdaw1sXnmWClLFmROaQb7a1ke+Kw77i+Whyi8AkgV9qt77HS7LnjtNM0JLgdhZjRWNpj/mJf5A=="]"#))
    );
    assert_eq!(parse_private_keys(&"nope".into()), Some(json("[]")));
    assert_eq!(parse_private_keys(&"".into()), Some(regorus::Value::Null));
    let bad = format!("{RSA}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    assert_eq!(parse_private_keys(&bad.as_str().into()), None, "a bad key fails all");
}
