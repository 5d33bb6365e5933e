//! Webhook signature verification (`weft::serve::signature`), against the connectors' own declarations.
//!
//! Every vector of the three `signature_vectors.json` files runs through the verifier its connector declares
//! (valid ones pass, invalid ones, including the researchers' "derived" negatives, fail), then the error cases:
//! headers, encodings, RSA keys, the replay window, the shared token and payhere.lk's form-encoded notify.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, TimeDelta, Utc};
use md5::{Digest as _, Md5};
use ring::hmac;
use serde_json::Value;
use weft::catalog::manifest::{Signature, SignatureEncoding, SignatureScheme};
use weft::catalog::Catalog;
use weft::serve::signature::{form_fields, payhere_lk_hash, Delivery, SignatureError, Verifier};

// ---- helpers ----

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A connector's `webhooks.signature`, as the built-in catalog loaded it from its `connector.yaml`.
fn declared(connector: &str) -> Signature {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    let catalog = CATALOG.get_or_init(|| Catalog::builtin().unwrap_or_else(|d| panic!("catalog: {d:#?}")));
    let connector = catalog.connector(connector).unwrap_or_else(|| panic!("no built-in connector `{connector}`"));
    connector.manifest.webhooks.as_ref().expect("the connector declares webhooks").signature.clone()
}

fn verifier(connector: &str, secret: &str) -> Verifier {
    Verifier::new(&declared(connector), Some(secret.to_string()), None).expect("verifier")
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn check(verifier: &Verifier, headers: &[(String, String)], body: &[u8]) -> Result<(), SignatureError> {
    verifier.verify(&Delivery { headers, body }, now())
}

/// A fixed "now"; nothing here depends on the wall clock.
fn now() -> DateTime<Utc> {
    "2025-01-28T14:36:00Z".parse().unwrap()
}

fn hmac_hex(algorithm: hmac::Algorithm, secret: &str, body: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(algorithm, secret.as_bytes()), body))
}

fn vectors(connector: &str) -> Vec<Value> {
    let path = repo(&format!("connectors/{connector}/signature_vectors.json"));
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file["vectors"].as_array().expect("a `vectors` array").clone()
}

fn text<'v>(vector: &'v Value, key: &str) -> &'v str {
    vector[key].as_str().unwrap_or_else(|| panic!("{}: no string `{key}`", vector["name"]))
}

/// The vector's body: the inline `body`, which must equal its `body_file` byte for byte when it names one.
/// `body_file` follows the research folder's layout; `map` turns it into the connector folder's copy.
fn vector_body(vector: &Value, connector: &str, map: impl Fn(&str) -> String) -> Vec<u8> {
    let inline = text(vector, "body").as_bytes().to_vec();
    if let Some(file) = vector["body_file"].as_str() {
        let path = repo(&format!("connectors/{connector}/{}", map(file)));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(bytes, inline, "{}: {} differs from the inline body", vector["name"], path.display());
    }
    inline
}

/// `application/x-www-form-urlencoded`, spaces as `+`, as a browser or PHP's curl would post it.
fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => char::from(b).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&").into_bytes()
}

/// Records `name` when `result` disagrees with `valid`.
fn expect(failures: &mut Vec<String>, name: &str, valid: bool, result: Result<(), SignatureError>) {
    if result.is_ok() != valid {
        failures.push(format!("{name}: expected valid={valid}, got {result:?}"));
    }
}

// ---- the published vectors ----

#[test]
fn razorpay_vectors() {
    let vectors = vectors("razorpay");
    assert_eq!(vectors.len(), 16, "the README promises 16 vectors");
    let mut failures = Vec::new();
    for v in &vectors {
        let name = text(v, "name");
        // `payment`, `subscription` and `payment_link` vectors are checkout callbacks, not webhooks, but the same
        // HMAC-SHA256 hex over their `body` message: the webhook verifier must agree with them too.
        assert!(["webhook", "payment", "subscription", "payment_link"].contains(&text(v, "kind")), "{name}");
        let body = vector_body(v, "razorpay", str::to_string);
        let verifier = verifier("razorpay", text(v, "secret"));
        let headers = headers(&[("X-Razorpay-Signature", text(v, "signature"))]);
        expect(&mut failures, name, v["valid"].as_bool().unwrap(), check(&verifier, &headers, &body));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `connectors/payhere` and `connectors/payhere-lk` both hold the research file unchanged: payhere.co's HMAC-SHA1
/// vectors and payhere.lk's md5 vectors. Each runs against the connector of its product.
fn payhere_vectors(file_of: &str) {
    let vectors = vectors(file_of);
    assert_eq!(vectors.len(), 9);
    let mut failures = Vec::new();
    for v in &vectors {
        let name = text(v, "name");
        let valid = v["valid"].as_bool().unwrap();
        let inputs = |key: &str| text(&v["inputs"], key);
        match text(v, "kind") {
            "webhook_hmac_sha1" => {
                let body = vector_body(v, "payhere", |f| f.replace("payhere_co_webhooks/", "webhooks/"));
                let verifier = verifier("payhere", text(v, "secret"));
                let headers = headers(&[("X-Signature", text(v, "signature"))]);
                expect(&mut failures, name, valid, check(&verifier, &headers, &body));
            }
            "notify_md5sig" => {
                let mut fields: Vec<(&str, &str)> = ["merchant_id", "order_id", "payhere_amount", "payhere_currency"]
                    .into_iter()
                    .chain(["status_code"])
                    .map(|k| (k, inputs(k)))
                    .collect();
                fields.push(("md5sig", text(v, "md5sig")));
                let verifier = verifier("payhere-lk", text(v, "merchant_secret"));
                expect(&mut failures, name, valid, check(&verifier, &[], &form(&fields)));
            }
            "checkout_hash" => {
                let fields = ["merchant_id", "order_id", "amount", "currency"].map(inputs);
                let hash = payhere_lk_hash(&fields, text(v, "merchant_secret"));
                let result = (hash == text(v, "hash")).then_some(()).ok_or(SignatureError::Mismatch);
                expect(&mut failures, name, valid, result);
            }
            "inner_secret_hash" => {
                // With no fields the hash is UPPER(HEX(MD5(inner))): it matches only if our inner hash is the vector's.
                let outer = hex::encode_upper(Md5::digest(text(v, "hash").as_bytes()));
                let ok = payhere_lk_hash(&[], text(v, "merchant_secret")) == outer;
                expect(&mut failures, name, valid, ok.then_some(()).ok_or(SignatureError::Mismatch));
            }
            other => panic!("{name}: unknown vector kind `{other}`"),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn payhere_vectors_in_payhere() {
    payhere_vectors("payhere");
}

#[test]
fn payhere_vectors_in_payhere_lk() {
    payhere_vectors("payhere-lk");
}

/// payhere.lk's example notifies, posted as forms. Four were made with the vectors' placeholder secret; the
/// official one (`notify.success.json`) was signed with a merchant secret that is not public.
#[test]
fn payhere_lk_example_notifies() {
    let verifier = verifier("payhere-lk", &"x".repeat(32));
    for status in ["pending", "cancelled", "failed", "chargedback", "success"] {
        let path = repo(&format!("connectors/payhere-lk/webhooks/notify.{status}.json"));
        let example: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let fields: Vec<(&str, &str)> =
            example.as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
        let result = check(&verifier, &[], &form(&fields));
        if status == "success" {
            assert_eq!(result, Err(SignatureError::Mismatch));
        } else {
            assert_eq!(result, Ok(()), "{status}");
        }
    }
}

// ---- HMAC ----

const PY_FIXTURE: &str = "connectors/razorpay/webhooks/sdk_fixture_payment.authorized.json";
const PY_SECRET: &str = "key_secret";
const PY_SIGNATURE: &str = "d60e67fd884556c045e9be7dad57903e33efc7172c17c6e3ef77db42d2b366e9";

#[test]
fn hmac_is_over_the_raw_body_never_a_reserialised_one() {
    let raw = std::fs::read(repo(PY_FIXTURE)).unwrap();
    let verifier = verifier("razorpay", PY_SECRET);
    let headers = headers(&[("X-Razorpay-Signature", PY_SIGNATURE)]);
    assert_eq!(check(&verifier, &headers, &raw), Ok(()));
    let parsed: Value = serde_json::from_slice(&raw).unwrap();
    for reserialised in [serde_json::to_vec(&parsed).unwrap(), serde_json::to_vec_pretty(&parsed).unwrap()] {
        assert_eq!(check(&verifier, &headers, &reserialised), Err(SignatureError::Mismatch));
    }
}

#[test]
fn header_names_match_in_any_case_and_hex_in_either_case() {
    let raw = std::fs::read(repo(PY_FIXTURE)).unwrap();
    let verifier = verifier("razorpay", PY_SECRET);
    for name in ["x-razorpay-signature", "X-RAZORPAY-SIGNATURE", "X-Razorpay-Signature"] {
        for value in [PY_SIGNATURE.to_string(), PY_SIGNATURE.to_uppercase(), format!(" {PY_SIGNATURE} ")] {
            let headers = headers(&[("Content-Type", "application/json"), (name, &value)]);
            assert_eq!(check(&verifier, &headers, &raw), Ok(()), "{name}: {value}");
        }
    }
}

#[test]
fn hmac_header_problems() {
    let raw = std::fs::read(repo(PY_FIXTURE)).unwrap();
    let verifier = verifier("razorpay", PY_SECRET);
    let missing = check(&verifier, &headers(&[("X-Signature", PY_SIGNATURE)]), &raw);
    assert_eq!(missing, Err(SignatureError::MissingHeader { header: "X-Razorpay-Signature".into() }));

    let malformed = |value: &str| match check(&verifier, &headers(&[("X-Razorpay-Signature", value)]), &raw) {
        Err(SignatureError::Malformed { why }) => why,
        other => panic!("{value:?}: expected Malformed, got {other:?}"),
    };
    assert_eq!(malformed("sdfafds"), "`X-Razorpay-Signature` is not hex");
    assert_eq!(malformed(&PY_SIGNATURE.replace('d', "g")), "`X-Razorpay-Signature` is not hex");
    assert_eq!(malformed(""), "`X-Razorpay-Signature` holds 0 bytes, expected 32");
    assert_eq!(malformed(&PY_SIGNATURE[..40]), "`X-Razorpay-Signature` holds 20 bytes, expected 32");

    let twice = headers(&[("X-Razorpay-Signature", PY_SIGNATURE), ("x-razorpay-signature", PY_SIGNATURE)]);
    assert!(matches!(check(&verifier, &twice, &raw), Err(SignatureError::Malformed { .. })));
}

#[test]
fn hmac_base64_encoding() {
    let signature = Signature {
        scheme: SignatureScheme::HmacSha256,
        header: Some("X-Hub-Signature".into()),
        encoding: Some(SignatureEncoding::Base64),
        public_key: None,
        timestamp_path: None,
    };
    let verifier = Verifier::new(&signature, Some("s3cret".into()), None).unwrap();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"s3cret"), b"{}");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tag.as_ref());
    assert_eq!(check(&verifier, &headers(&[("x-hub-signature", &b64)]), b"{}"), Ok(()));
    assert_eq!(check(&verifier, &headers(&[("x-hub-signature", &b64)]), b"{} "), Err(SignatureError::Mismatch));
    let hex = hex::encode(tag.as_ref());
    assert!(matches!(
        check(&verifier, &headers(&[("x-hub-signature", &hex)]), b"{}"),
        Err(SignatureError::Malformed { .. })
    ));
}

#[test]
fn a_secret_is_required_and_never_shown() {
    for connector in ["razorpay", "payhere", "payhere-lk", "wizehire"] {
        for secret in [None, Some(String::new())] {
            let result = Verifier::new(&declared(connector), secret, None);
            assert!(matches!(result, Err(SignatureError::NoSecret)), "{connector}: {result:?}");
        }
    }
    let secret = "a-very-secret-webhook-key";
    let raw = std::fs::read(repo(PY_FIXTURE)).unwrap();
    let expected = hmac_hex(hmac::HMAC_SHA256, secret, &raw);
    let verifier = verifier("razorpay", secret);
    assert_eq!(check(&verifier, &headers(&[("X-Razorpay-Signature", &expected)]), &raw), Ok(()));
    let mut shown = vec![format!("{verifier:?}")];
    for value in [PY_SIGNATURE, "zz", "00", ""] {
        let error = check(&verifier, &headers(&[("X-Razorpay-Signature", value)]), &raw).unwrap_err();
        shown.extend([error.to_string(), format!("{error:?}")]);
    }
    for text in shown {
        assert!(!text.contains(secret) && !text.contains(&expected), "leaks: {text}");
    }
}

#[test]
fn config_errors() {
    let mut signature = declared("razorpay");
    signature.header = None;
    let error = Verifier::new(&signature, Some("s".into()), None).unwrap_err();
    assert_eq!(error, SignatureError::Config { why: "scheme `hmac-sha256` needs `header`".into() });
    let mut signature = declared("razorpay");
    signature.timestamp_path = Some("$.[".into());
    assert!(matches!(Verifier::new(&signature, Some("s".into()), None), Err(SignatureError::Config { .. })));
}

#[test]
fn scheme_none_accepts_anything() {
    let signature = Signature {
        scheme: SignatureScheme::None,
        header: None,
        encoding: None,
        public_key: None,
        timestamp_path: None,
    };
    let verifier = Verifier::new(&signature, None, None).unwrap();
    assert_eq!(check(&verifier, &[], b"anything at all"), Ok(()));
}

// ---- RSA (GHL) ----
//
// GHL's private key is not ours, so RSA is tested with a throwaway key pair generated once with OpenSSL 3.0:
//   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out test.key
//   openssl pkey -in test.key -pubout                          # TEST_PUBLIC_KEY
//   openssl rsa -in test.key -RSAPublicKey_out                 # TEST_RSA_PUBLIC_KEY (the same key, PKCS#1)
//   printf '%s' "$GHL_BODY" | openssl dgst -sha256 -sign test.key | base64 -w0   # GHL_BODY_SIGNATURE
// plus an unrelated 2048-bit key, a 1024-bit key and a P-256 key (public halves only). The private keys were
// discarded.

const TEST_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtAbUjc82XgEoE5mbStwz
NC2IWbVFPcCuR7dk1GXTT1MXooShtadZfm2ZeX6beoxTGp+Ab3OG6JW6UabNHUjJ
CPhzWY5S6QymD6F7kwPxYoqzZMLDwvEItfNXLJQSoE+Z0XDANWYNMUXBYWGZ74VU
hzBpjEy8Xf4zIb5jG3xNT/0BFTQXIQg63cjKy2fyESi17gdEs00KtdyDxUk4AnMv
CeJqn8nGBbxs3DLK70lzX5YYklSrRLRa4uEassKRgOvrlQx+vSgvxrQJn259IWPC
jxAu8/jDkHpNiSPUUMK68Ulh9C8BsV3EZJTJGXJ7SzlKWQIct7itw4hn66XLslks
yQIDAQAB
-----END PUBLIC KEY-----
";

const TEST_RSA_PUBLIC_KEY: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAtAbUjc82XgEoE5mbStwzNC2IWbVFPcCuR7dk1GXTT1MXooShtadZ
fm2ZeX6beoxTGp+Ab3OG6JW6UabNHUjJCPhzWY5S6QymD6F7kwPxYoqzZMLDwvEI
tfNXLJQSoE+Z0XDANWYNMUXBYWGZ74VUhzBpjEy8Xf4zIb5jG3xNT/0BFTQXIQg6
3cjKy2fyESi17gdEs00KtdyDxUk4AnMvCeJqn8nGBbxs3DLK70lzX5YYklSrRLRa
4uEassKRgOvrlQx+vSgvxrQJn259IWPCjxAu8/jDkHpNiSPUUMK68Ulh9C8BsV3E
ZJTJGXJ7SzlKWQIct7itw4hn66XLslksyQIDAQAB
-----END RSA PUBLIC KEY-----
";

const OTHER_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA7+dcbJs68vIP75ard1eG
eAib6hFB2ax05oKcAwT8N+FDX0Dr3BeUezT5M6HK31jFBc+0jcnkt5vIDIRgV3qc
fD2FTBa+2y38Uadu1hPg/eZ4hbACaKZn9MXkyQPSy5Akh0vQjnBKkKRnN2EeupvB
gFsPmTgN8rBJEe46MR+MWrye9RorEfLcMhiCsZoJ5+6GdOV/DE20KWXgyrn5gXHD
SIiWCU3olvCHw7jj0WyD3buk+w/sY0lNR+3LOsaQ2qS88Wc3+o7L7vdYLa5z7s+t
U1rhy/sV3D1g03gXfVnV4SMXkpCstbInhA3QM+RNWJxsQCfDlTtAFokb5vu/5AxK
IQIDAQAB
-----END PUBLIC KEY-----
";

const SMALL_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDHJ8TwLuE2P7lreVawKpVtmRr1
CcwUqXWZUwZ7tOYj4MEg3QgrOBG8/ZnQUJEQnXakX8JXndB0Ff4A/3p+n3Yt3msO
g/FXpkBf0IcknHoIJUex3nFgM/zzAiDbc6kP0448z27bu/TcNiD4Q5DcWbaQUM7z
nNTqOio7WARMvJpNNQIDAQAB
-----END PUBLIC KEY-----
";

const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAf/x9Kno2HkbqPBhG7rjjrP3rm97
LUDTLfNjgYqrTVilVMl/LOGXjmb7SXmvhqcg5mbud501Yt6Q9kdutjNscA==
-----END PUBLIC KEY-----
";

const GHL_BODY: &str = r#"{"type":"ContactCreate","locationId":"ve9EPM428h8vShlRW1KT","id":"nmFmQEsNgz6AVpgLVUJ0","email":"jane@example.com","timestamp":"2025-01-28T14:35:00Z","webhookId":"abc123xyz"}"#;

const GHL_BODY_SIGNATURE: &str = "Wfi9u7bDB9kZfIRYL2I95SzmHBXPJOOu/RIr80XCbLodYjI59fz1I3hV+cLpMDGwtN8daGdSk+pLt0LtMFPHl5Vw9IMr0AL/F2ZPxAhpHGonTWP06cU0AZ6qGOW77982GDc+0Pkm+FC2kRw4TkOR+NI4CyMOzACeiTakH+aEcfKEO7mT7CEcEq9JhV7o66lvcq27wDDLBlXBRE/RAcDdYySMci1CP3R4lUzxLu/lRkh1dz/dUKgB5Fb57c/K1STAsCOCsJ1xdlB/7dl3PUYxY7RjAWaBBAdsa3cb7zf92HYlCEG5P/mP81qUSxNUvpWD8H3ltxy5S6DPrTUszZUfBg==";

/// A verifier with GHL's declaration (header, base64, `timestamp_path: $.timestamp`) and the given key.
fn ghl(pem: &str) -> Result<Verifier, SignatureError> {
    Verifier::new(&declared("ghl"), None, Some(pem))
}

fn ghl_headers() -> Vec<(String, String)> {
    headers(&[("x-wh-signature", GHL_BODY_SIGNATURE)])
}

#[test]
fn rsa_accepts_a_genuine_delivery_with_either_pem_form() {
    for pem in [TEST_PUBLIC_KEY, TEST_RSA_PUBLIC_KEY, &TEST_PUBLIC_KEY.replace('\n', "\r\n")] {
        assert_eq!(check(&ghl(pem).unwrap(), &ghl_headers(), GHL_BODY.as_bytes()), Ok(()));
    }
    let upper = headers(&[("X-WH-Signature", GHL_BODY_SIGNATURE)]);
    assert_eq!(check(&ghl(TEST_PUBLIC_KEY).unwrap(), &upper, GHL_BODY.as_bytes()), Ok(()));
}

#[test]
fn rsa_rejects_a_tampered_body_a_wrong_key_and_a_bad_header() {
    let verifier = ghl(TEST_PUBLIC_KEY).unwrap();
    let tampered = GHL_BODY.replace("jane@", "mallory@");
    assert_eq!(check(&verifier, &ghl_headers(), tampered.as_bytes()), Err(SignatureError::Mismatch));
    let other = ghl(OTHER_PUBLIC_KEY).unwrap();
    assert_eq!(check(&other, &ghl_headers(), GHL_BODY.as_bytes()), Err(SignatureError::Mismatch));

    let mut flipped = GHL_BODY_SIGNATURE.to_string();
    flipped.replace_range(..1, "X");
    let result = check(&verifier, &headers(&[("x-wh-signature", &flipped)]), GHL_BODY.as_bytes());
    assert_eq!(result, Err(SignatureError::Mismatch));
    let result = check(&verifier, &headers(&[("x-wh-signature", "not*base64")]), GHL_BODY.as_bytes());
    assert_eq!(result, Err(SignatureError::Malformed { why: "`x-wh-signature` is not base64".into() }));
    let result = check(&verifier, &[], GHL_BODY.as_bytes());
    assert_eq!(result, Err(SignatureError::MissingHeader { header: "x-wh-signature".into() }));
}

#[test]
fn ghls_published_key_parses() {
    let pem = std::fs::read_to_string(repo("connectors/ghl/webhook-public-key.pem")).unwrap();
    let verifier = ghl(&pem).expect("GHL's 4096-bit key");
    // Our test key's signature is not GHL's.
    assert_eq!(check(&verifier, &ghl_headers(), GHL_BODY.as_bytes()), Err(SignatureError::Mismatch));
}

#[test]
fn unusable_public_keys() {
    let why = |pem: Option<&str>| match Verifier::new(&declared("ghl"), None, pem) {
        Err(SignatureError::BadKey { why }) => why,
        other => panic!("expected BadKey, got {other:?}"),
    };
    assert_eq!(why(None), "none was given");
    assert_eq!(why(Some("")), "not a PEM block");
    assert_eq!(why(Some("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")), "not a PEM block");
    assert_eq!(why(Some(&TEST_PUBLIC_KEY.replace("-----END PUBLIC KEY-----\n", ""))), "not a PEM block");
    assert_eq!(why(Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")), "not a SubjectPublicKeyInfo");
    assert_eq!(why(Some(SMALL_PUBLIC_KEY)), "a 1024-bit RSA key; rsa-sha256 needs 2048 to 8192 bits");
    assert_eq!(why(Some(EC_PUBLIC_KEY)), "not an RSA key (rsa-sha256 needs one)");
    let cert = TEST_PUBLIC_KEY.replace("PUBLIC KEY", "CERTIFICATE");
    assert_eq!(why(Some(&cert)), "a PEM `CERTIFICATE`, expected `PUBLIC KEY`");
}

// ---- the replay window ----

#[test]
fn a_stale_or_future_timestamp_is_refused_after_the_signature_passes() {
    let verifier = ghl(TEST_PUBLIC_KEY).unwrap();
    let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
    let body = GHL_BODY.as_bytes();
    let run = |verifier: &Verifier, now| verifier.verify(&Delivery { headers: &ghl_headers(), body }, now);
    assert_eq!(run(&verifier, at("2025-01-28T14:40:00Z")), Ok(()));
    assert_eq!(run(&verifier, at("2025-01-28T14:40:01Z")), Err(SignatureError::Stale { age_secs: 301 }));
    assert_eq!(run(&verifier, at("2025-01-28T14:45:00Z")), Err(SignatureError::Stale { age_secs: 600 }));
    assert_eq!(run(&verifier, at("2025-01-28T14:29:00Z")), Err(SignatureError::Stale { age_secs: -360 }));
    assert_eq!(
        SignatureError::Stale { age_secs: -360 }.to_string(),
        "the delivery's timestamp is 360s in the future, outside the replay window"
    );
    let patient = ghl(TEST_PUBLIC_KEY).unwrap().with_replay_window(TimeDelta::minutes(15));
    assert_eq!(run(&patient, at("2025-01-28T14:45:00Z")), Ok(()));
    // A forged delivery is a mismatch, whatever its timestamp says.
    let forged = GHL_BODY.replace("14:35:00", "14:00:00");
    let result = verifier.verify(&Delivery { headers: &ghl_headers(), body: forged.as_bytes() }, now());
    assert_eq!(result, Err(SignatureError::Mismatch));
}

#[test]
fn timestamps_as_iso_8601_or_unix_seconds_or_milliseconds() {
    let mut signature = declared("razorpay");
    signature.timestamp_path = Some("$.timestamp".into());
    let verifier = Verifier::new(&signature, Some("s".into()), None).unwrap();
    let run = |body: &str| {
        let headers = headers(&[("X-Razorpay-Signature", &hmac_hex(hmac::HMAC_SHA256, "s", body.as_bytes()))]);
        check(&verifier, &headers, body.as_bytes())
    };
    let now = now().timestamp();
    for ok in [
        r#"{"timestamp":"2025-01-28T14:35:00Z"}"#.to_string(),
        r#"{"timestamp":"2025-01-28T14:35:00.961Z"}"#.to_string(),
        r#"{"timestamp":"2025-01-28T20:05:00+05:30"}"#.to_string(),
        format!(r#"{{"timestamp":{}}}"#, now - 60),
        format!(r#"{{"timestamp":{}}}"#, (now - 60) * 1000),
        format!(r#"{{"timestamp":"{}"}}"#, now - 60),
        format!(r#"{{"timestamp":{}.5}}"#, now - 60),
    ] {
        assert_eq!(run(&ok), Ok(()), "{ok}");
    }
    assert_eq!(run(&format!(r#"{{"timestamp":{}}}"#, now - 3600)), Err(SignatureError::Stale { age_secs: 3600 }));
    assert_eq!(run(r#"{"id":1}"#), Err(SignatureError::MissingTimestamp { path: "$.timestamp".into() }));
    for bad in [r#"{"timestamp":"yesterday"}"#, r#"{"timestamp":true}"#, "not json"] {
        assert!(matches!(run(bad), Err(SignatureError::Malformed { .. })), "{bad}");
    }
}

// ---- shared secret (Wizehire relay) ----

#[test]
fn shared_secret_token() {
    let secret = "k3Jd9-0pQ7vX2mN8rT4yW6zA1bC5eF0g";
    let verifier = verifier("wizehire", secret);
    let body = br#"{"event":"applicant.created","id":"1"}"#;
    for name in ["X-Weft-Token", "x-weft-token"] {
        assert_eq!(check(&verifier, &headers(&[(name, secret)]), body), Ok(()));
    }
    let longer = format!("{secret}x");
    let upper = secret.to_uppercase();
    for wrong in ["", &secret[..31], &longer, &upper, "k3Jd9-0pQ7vX2mN8rT4yW6zA1bC5eF0h"] {
        let result = check(&verifier, &headers(&[("X-Weft-Token", wrong)]), body);
        assert_eq!(result, Err(SignatureError::Mismatch), "{wrong:?}");
        assert!(!format!("{result:?}{verifier:?}").contains(secret));
    }
    let result = check(&verifier, &[], body);
    assert_eq!(result, Err(SignatureError::MissingHeader { header: "X-Weft-Token".into() }));
}

// ---- payhere.lk md5sig ----

const LK_SECRET: &str = "MzE1MDcyNjAyMTM4NDIxNzk5NDEyOTk3";

fn notify(order_id: &str, amount: &str, status: &str, md5sig: &str) -> Vec<(String, String)> {
    [
        ("merchant_id", "1211149"),
        ("order_id", order_id),
        ("payment_id", "320025071278"),
        ("payhere_amount", amount),
        ("payhere_currency", "LKR"),
        ("status_code", status),
        ("md5sig", md5sig),
        ("status_message", "Successfully completed the payment."),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn post(fields: &[(String, String)]) -> Vec<u8> {
    form(&fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>())
}

#[test]
fn md5sig_over_percent_encoded_fields() {
    let verifier = verifier("payhere-lk", LK_SECRET);
    let order = "Order #12/3 & café+more";
    let md5sig = payhere_lk_hash(&["1211149", order, "1500.00", "LKR", "2"], LK_SECRET);
    let fields = notify(order, "1500.00", "2", &md5sig);
    let body = post(&fields);
    assert!(String::from_utf8_lossy(&body).contains("order_id=Order+%2312%2F3+%26+caf%C3%A9%2Bmore"));
    assert_eq!(check(&verifier, &[], &body), Ok(()));
    assert_eq!(form_fields(&body), fields);
    let lower = post(&notify(order, "1500.00", "2", &md5sig.to_lowercase()));
    assert_eq!(check(&verifier, &[], &lower), Ok(()));

    let tampered = post(&notify(order, "1500.00", "-2", &md5sig));
    assert_eq!(check(&verifier, &[], &tampered), Err(SignatureError::Mismatch));
    let other_secret = crate::verifier("payhere-lk", "another-merchant-secret");
    assert_eq!(check(&other_secret, &[], &body), Err(SignatureError::Mismatch));
}

#[test]
fn md5sig_form_problems() {
    let verifier = verifier("payhere-lk", LK_SECRET);
    let md5sig = payhere_lk_hash(&["1211149", "7", "10.00", "LKR", "2"], LK_SECRET);
    let mut fields = notify("7", "10.00", "2", &md5sig);
    fields.retain(|(k, _)| k != "payhere_currency");
    assert_eq!(
        check(&verifier, &[], &post(&fields)),
        Err(SignatureError::MissingField { field: "payhere_currency".into() })
    );
    fields.retain(|(k, _)| k != "md5sig");
    assert_eq!(check(&verifier, &[], &post(&fields)), Err(SignatureError::MissingField { field: "md5sig".into() }));

    // A second status_code must not ride along on a genuine signature.
    let mut twice = notify("7", "10.00", "2", &md5sig);
    twice.push(("status_code".into(), "-1".into()));
    assert!(matches!(check(&verifier, &[], &post(&twice)), Err(SignatureError::Malformed { .. })));

    for bad in ["not-hex", "ABA32E", ""] {
        let result = check(&verifier, &[], &post(&notify("7", "10.00", "2", bad)));
        assert!(matches!(result, Err(SignatureError::Malformed { .. })), "{bad:?}: {result:?}");
    }
}

#[test]
fn form_decoding_follows_the_url_standard() {
    let pairs = |body: &str| form_fields(body.as_bytes());
    let owned = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    assert_eq!(
        pairs("a=1+2&b=%41%4a%zz%4&&c&d=x=y"),
        owned(&[("a", "1 2"), ("b", "AJ%zz%4"), ("c", ""), ("d", "x=y")])
    );
    assert_eq!(pairs("n%C3%A4me=%E2%82%AC&bad=%FF"), owned(&[("näme", "€"), ("bad", "\u{FFFD}")]));
    assert_eq!(pairs(""), owned(&[]));
}
