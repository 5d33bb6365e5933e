//! Webhook signature verification: does a delivery really come from the app its connector names?
//!
//! A connector declares its scheme in `connector.yaml` (`webhooks.signature`); a connection supplies the secret.
//! [`Verifier::new`] checks that pairing once per connection (secret present, key parses, JSONPath compiles), so
//! a delivery only costs [`Verifier::verify`]: one MAC or RSA check over the **raw body bytes**. The body is never
//! parsed and re-serialised before it is checked: a single changed byte (a stripped trailing newline, another
//! indent) is a different message.
//!
//! | scheme | what is checked |
//! |---|---|
//! | `hmac-sha256`, `hmac-sha1` | `header` = HMAC(secret, body), hex or base64 (Razorpay, Payhere.co) |
//! | `rsa-sha256` | `header` = base64 RSA PKCS#1 v1.5 SHA-256 signature of the body (GHL) |
//! | `shared-secret` | `header` = the secret itself (a Zapier relay) |
//! | `payhere-md5sig` | the form field `md5sig` = payhere.lk's MD5 over five fields and the merchant secret |
//! | `none` | nothing |
//!
//! With `timestamp_path`, an authentic delivery must also carry a timestamp within [`REPLAY_WINDOW_SECS`] of
//! now, so that a captured delivery cannot be replayed later. Every comparison with a secret-derived value is
//! constant-time, and no error or `Debug` output holds the secret or the expected signature.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use md5::{Digest as _, Md5};
use ring::hmac;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::catalog::manifest::{Signature, SignatureEncoding, SignatureScheme};

/// How far a signed timestamp may be from now, either way, by default: GHL's documented window. Later
/// deliveries are replays; earlier ones allow for the sender's clock running ahead.
pub const REPLAY_WINDOW_SECS: i64 = 5 * 60;

/// Everything a verifier needs from one delivery.
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    /// Request headers, names in any case.
    pub headers: &'a [(String, String)],
    /// The body exactly as received: never re-serialised.
    pub body: &'a [u8],
}

impl<'a> Delivery<'a> {
    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a delivery (or a verifier's configuration) was rejected. Never holds a secret or an expected signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header that should carry the signature or token is absent.
    #[error("the `{header}` header is missing")]
    MissingHeader { header: String },
    /// A signed form field (payhere.lk notify) is absent.
    #[error("the form field `{field}` is missing")]
    MissingField { field: String },
    /// The signature cannot be read: not hex/base64, the wrong length, sent twice, or a body with no readable
    /// timestamp.
    #[error("malformed delivery: {why}")]
    Malformed { why: String },
    /// Well-formed, but not a signature of this body with this connection's key.
    #[error("the signature does not match the body")]
    Mismatch,
    /// Authentic, but its signed timestamp is outside the replay window (negative: in the future).
    #[error("the delivery's timestamp is {} the replay window", stale_text(*age_secs))]
    Stale { age_secs: i64 },
    /// `timestamp_path` is declared and the body has nothing there.
    #[error("the body has no timestamp at `{path}`")]
    MissingTimestamp { path: String },
    /// The scheme needs the connection's webhook secret and none (or an empty one) is configured.
    #[error("this webhook signature scheme needs the connection's webhook secret, and none is set")]
    NoSecret,
    /// The public key is absent, not PEM, not RSA, or of a size ring does not verify.
    #[error("bad webhook public key: {why}")]
    BadKey { why: String },
    /// The connector's `webhooks.signature` cannot be used (no header declared, a bad `timestamp_path`).
    #[error("bad webhook signature declaration: {why}")]
    Config { why: String },
}

fn stale_text(age_secs: i64) -> String {
    if age_secs < 0 {
        format!("{}s in the future, outside", -age_secs)
    } else {
        format!("{age_secs}s old, outside")
    }
}

fn malformed(why: impl Into<String>) -> SignatureError {
    SignatureError::Malformed { why: why.into() }
}

/// Verifies the deliveries of one connection. Built once per connection by [`Verifier::new`].
pub struct Verifier {
    scheme: SignatureScheme,
    check: Check,
    replay: Option<Replay>,
}

enum Check {
    None,
    Hmac {
        header: String,
        encoding: SignatureEncoding,
        key: hmac::Key,
        tag_len: usize,
    },
    Rsa {
        header: String,
        encoding: SignatureEncoding,
        key: UnparsedPublicKey<Vec<u8>>,
    },
    SharedSecret {
        header: String,
        secret: String,
    },
    /// Holds `UPPER(HEX(MD5(merchant_secret)))`, the only form of the secret the md5sig uses (and as good as
    /// the secret for forging one, so it is kept as private as the secret).
    PayhereMd5sig {
        secret_hash: String,
    },
}

struct Replay {
    path: JsonPath,
    path_text: String,
    window: TimeDelta,
}

impl Verifier {
    /// Checks the connector's declaration against what the connection supplies.
    ///
    /// `secret` is the connection's webhook secret: the HMAC key, the shared token, or the payhere.lk merchant
    /// secret. `public_key_pem` is the connector's PEM public key, for `rsa-sha256`
    /// (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`). Whatever a scheme does not use is ignored.
    pub fn new(
        signature: &Signature,
        secret: Option<String>,
        public_key_pem: Option<&str>,
    ) -> Result<Verifier, SignatureError> {
        let secret = || secret.clone().filter(|s| !s.is_empty()).ok_or(SignatureError::NoSecret);
        let header = || {
            signature.header.clone().ok_or_else(|| SignatureError::Config {
                why: format!("scheme `{}` needs `header`", scheme_name(signature.scheme)),
            })
        };
        let check = match signature.scheme {
            SignatureScheme::None => Check::None,
            SignatureScheme::HmacSha256 | SignatureScheme::HmacSha1 => {
                let algorithm = if signature.scheme == SignatureScheme::HmacSha256 {
                    hmac::HMAC_SHA256
                } else {
                    hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
                };
                Check::Hmac {
                    header: header()?,
                    encoding: signature.encoding.unwrap_or(SignatureEncoding::Hex),
                    key: hmac::Key::new(algorithm, secret()?.as_bytes()),
                    tag_len: algorithm.digest_algorithm().output_len(),
                }
            }
            SignatureScheme::RsaSha256 => {
                let pem = public_key_pem.ok_or_else(|| SignatureError::BadKey { why: "none was given".into() })?;
                Check::Rsa {
                    header: header()?,
                    encoding: signature.encoding.unwrap_or(SignatureEncoding::Base64),
                    key: UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, rsa_public_key_der(pem)?),
                }
            }
            SignatureScheme::SharedSecret => Check::SharedSecret { header: header()?, secret: secret()? },
            SignatureScheme::PayhereMd5sig => {
                Check::PayhereMd5sig { secret_hash: hex::encode_upper(Md5::digest(secret()?.as_bytes())) }
            }
        };
        let replay = match &signature.timestamp_path {
            None => None,
            Some(text) => Some(Replay {
                path: JsonPath::parse(text)
                    .map_err(|e| SignatureError::Config { why: format!("`timestamp_path: {text}`: {e}") })?,
                path_text: text.clone(),
                window: TimeDelta::seconds(REPLAY_WINDOW_SECS),
            }),
        };
        Ok(Verifier { scheme: signature.scheme, check, replay })
    }

    /// Replaces the replay window ([`REPLAY_WINDOW_SECS`] by default). Without `timestamp_path` it has no effect.
    pub fn with_replay_window(mut self, window: TimeDelta) -> Verifier {
        if let Some(replay) = &mut self.replay {
            replay.window = window.abs();
        }
        self
    }

    /// `Ok` when the delivery is authentic and, with `timestamp_path`, recent. The signature is checked first,
    /// so the timestamp is only trusted (and only parsed) once the body is known to be genuine.
    pub fn verify(&self, delivery: &Delivery, now: DateTime<Utc>) -> Result<(), SignatureError> {
        match &self.check {
            Check::None => {}
            Check::Hmac { header, encoding, key, tag_len } => {
                let tag = decode(single_header(delivery, header)?, *encoding, header)?;
                if tag.len() != *tag_len {
                    return Err(malformed(format!("`{header}` holds {} bytes, expected {tag_len}", tag.len())));
                }
                hmac::verify(key, delivery.body, &tag).map_err(|_| SignatureError::Mismatch)?;
            }
            Check::Rsa { header, encoding, key } => {
                let signature = decode(single_header(delivery, header)?, *encoding, header)?;
                key.verify(delivery.body, &signature).map_err(|_| SignatureError::Mismatch)?;
            }
            Check::SharedSecret { header, secret } => {
                if !same_bytes(single_header(delivery, header)?.as_bytes(), secret.as_bytes()) {
                    return Err(SignatureError::Mismatch);
                }
            }
            Check::PayhereMd5sig { secret_hash } => verify_md5sig(delivery.body, secret_hash)?,
        }
        match &self.replay {
            Some(replay) => replay.check(delivery.body, now),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = match &self.check {
            Check::Hmac { header, .. } | Check::Rsa { header, .. } | Check::SharedSecret { header, .. } => Some(header),
            Check::None | Check::PayhereMd5sig { .. } => None,
        };
        f.debug_struct("Verifier")
            .field("scheme", &scheme_name(self.scheme))
            .field("header", &header)
            .field("timestamp_path", &self.replay.as_ref().map(|r| &r.path_text))
            .finish_non_exhaustive()
    }
}

fn scheme_name(scheme: SignatureScheme) -> &'static str {
    match scheme {
        SignatureScheme::None => "none",
        SignatureScheme::HmacSha256 => "hmac-sha256",
        SignatureScheme::HmacSha1 => "hmac-sha1",
        SignatureScheme::RsaSha256 => "rsa-sha256",
        SignatureScheme::SharedSecret => "shared-secret",
        SignatureScheme::PayhereMd5sig => "payhere-md5sig",
    }
}

/// The header's only value. Two values are refused rather than picking one: a proxy and the app might not
/// agree on which one counts.
fn single_header<'d>(delivery: &Delivery<'d>, name: &str) -> Result<&'d str, SignatureError> {
    let mut values = delivery.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    match (values.next(), values.next()) {
        (None, _) => Err(SignatureError::MissingHeader { header: name.to_string() }),
        (Some(value), None) => Ok(value),
        (Some(_), Some(_)) => Err(malformed(format!("`{name}` was sent more than once"))),
    }
}

/// Hex in either case, or standard padded base64. The value itself is not quoted in the error: it can be long,
/// and it is the sender's data.
fn decode(value: &str, encoding: SignatureEncoding, header: &str) -> Result<Vec<u8>, SignatureError> {
    let value = value.trim();
    match encoding {
        SignatureEncoding::Hex => hex::decode(value).map_err(|_| malformed(format!("`{header}` is not hex"))),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| malformed(format!("`{header}` is not base64"))),
    }
}

/// Equality that takes the same time wherever the inputs differ, and whatever their lengths: it compares
/// fixed-length HMACs of the two (ring compares tags in constant time), so neither the content nor the length of
/// the secret leaks through timing. The key needs no secrecy; it only makes the comparison fixed-length.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"weft: constant-time comparison");
    hmac::verify(&key, a, hmac::sign(&key, b).as_ref()).is_ok()
}

impl Replay {
    fn check(&self, body: &[u8], now: DateTime<Utc>) -> Result<(), SignatureError> {
        let json: Value = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("the body is not JSON, so its timestamp cannot be read: {e}")))?;
        let node = self
            .path
            .query(&json)
            .at_most_one()
            .map_err(|_| malformed(format!("`{}` matches several values", self.path_text)))?
            .ok_or_else(|| SignatureError::MissingTimestamp { path: self.path_text.clone() })?;
        let sent = instant(node).ok_or_else(|| {
            malformed(format!("`{}` is not an ISO-8601 time or unix seconds/milliseconds", self.path_text))
        })?;
        let age = now - sent;
        if age.abs() > self.window {
            return Err(SignatureError::Stale { age_secs: age.num_seconds() });
        }
        Ok(())
    }
}

/// An RFC 3339 time (`2025-01-28T14:35:00Z`), or unix seconds or milliseconds as a number or a digit string.
fn instant(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => from_epoch(n.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s).map(|t| t.to_utc()).ok().or_else(|| from_epoch(s.parse().ok()?))
        }
        _ => None,
    }
}

/// Seconds, or milliseconds when the number is too large to be seconds: 1e11 s is the year 5138, while
/// 1e11 ms is 1973, so no plausible delivery time is ambiguous.
fn from_epoch(x: f64) -> Option<DateTime<Utc>> {
    if !x.is_finite() {
        return None;
    }
    let millis = if x.abs() >= 1e11 { x } else { x * 1000.0 };
    DateTime::from_timestamp_millis(millis as i64)
}

// ---- payhere.lk md5sig ----

/// The fields payhere.lk's notify md5sig covers, in order, before the hashed merchant secret.
const MD5SIG_FIELDS: [&str; 5] = ["merchant_id", "order_id", "payhere_amount", "payhere_currency", "status_code"];

/// payhere.lk's hash: `UPPER(HEX(MD5(fields concatenated + UPPER(HEX(MD5(merchant_secret))))))`. With the notify's
/// five fields it is the `md5sig`; with `merchant_id, order_id, amount, currency` it is the checkout `hash`.
pub fn payhere_lk_hash(fields: &[&str], merchant_secret: &str) -> String {
    let secret_hash = hex::encode_upper(Md5::digest(merchant_secret.as_bytes()));
    hex::encode_upper(payhere_digest(fields.iter().map(|f| f.as_bytes()), &secret_hash))
}

fn payhere_digest<'f>(fields: impl Iterator<Item = &'f [u8]>, secret_hash: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    for field in fields {
        md5.update(field);
    }
    md5.update(secret_hash.as_bytes());
    md5.finalize().into()
}

/// The md5sig is hashed from the fields' decoded bytes, exactly as posted (`1000.00` is not `1000`). A field sent
/// twice is refused: the signature would cover one copy and the flow might read the other.
fn verify_md5sig(body: &[u8], secret_hash: &str) -> Result<(), SignatureError> {
    let pairs = form_pairs(body);
    let field = |name: &str| -> Result<&[u8], SignatureError> {
        let mut values = pairs.iter().filter(|(k, _)| k == name.as_bytes()).map(|(_, v)| v.as_slice());
        match (values.next(), values.next()) {
            (None, _) => Err(SignatureError::MissingField { field: name.to_string() }),
            (Some(value), None) => Ok(value),
            (Some(_), Some(_)) => Err(malformed(format!("the form field `{name}` was sent more than once"))),
        }
    };
    // Comparing the decoded bytes is comparing the upper-cased hex: PayHere sends upper case, any case passes.
    let sent = hex::decode(field("md5sig")?.trim_ascii()).map_err(|_| malformed("`md5sig` is not hex"))?;
    if sent.len() != 16 {
        return Err(malformed(format!("`md5sig` holds {} bytes, expected 16", sent.len())));
    }
    let signed = MD5SIG_FIELDS.iter().map(|name| field(name)).collect::<Result<Vec<_>, _>>()?;
    let expected = payhere_digest(signed.into_iter(), secret_hash);
    if same_bytes(&sent, &expected) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

// ---- application/x-www-form-urlencoded ----

/// The fields of an `application/x-www-form-urlencoded` body, in order, as text (invalid UTF-8 becomes U+FFFD).
/// Decoding follows the URL Standard: `+` is a space, `%XX` a byte, and a `%` not followed by two hex digits
/// stays as it is.
pub fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_pairs(body)
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// As [`form_fields`], as bytes: signatures are computed over what was sent, not over a lossy reading of it.
fn form_pairs(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (form_decode(&pair[..eq]), form_decode(&pair[eq + 1..])),
            None => (form_decode(pair), Vec::new()),
        })
        .collect()
}

fn form_decode(raw: &[u8]) -> Vec<u8> {
    let hex_digit = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let escaped = match raw[i..] {
            [b'%', hi, lo, ..] => hex_digit(hi).zip(hex_digit(lo)).map(|(hi, lo)| (hi * 16 + lo) as u8),
            _ => None,
        };
        match (escaped, raw[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

// ---- RSA public keys ----

/// The DER `RSAPublicKey` (PKCS#1) ring verifies with, from a PEM `RSA PUBLIC KEY` (already that) or
/// `PUBLIC KEY` (a SubjectPublicKeyInfo wrapping it, what OpenSSL and GHL publish). Also checks the modulus size
/// now, so that a key ring would refuse fails when the connection is set up, not on every delivery.
fn rsa_public_key_der(pem: &str) -> Result<Vec<u8>, SignatureError> {
    let bad = |why: &str| SignatureError::BadKey { why: why.to_string() };
    let (label, der) = pem_decode(pem).ok_or_else(|| bad("not a PEM block"))?;
    let pkcs1 = match label.as_str() {
        "RSA PUBLIC KEY" => der,
        "PUBLIC KEY" => spki_rsa_public_key(&der)?.to_vec(),
        other => return Err(bad(&format!("a PEM `{other}`, expected `PUBLIC KEY`"))),
    };
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    let bits = der_sequence(&pkcs1)
        .and_then(|fields| {
            let (modulus, rest) = der_take(fields, TAG_INTEGER)?;
            let (_exponent, rest) = der_take(rest, TAG_INTEGER)?;
            rest.is_empty().then_some(modulus)
        })
        .map(integer_bits)
        .ok_or_else(|| bad("not an RSA public key"))?;
    if !(2048..=8192).contains(&bits) {
        return Err(bad(&format!("a {bits}-bit RSA key; rsa-sha256 needs 2048 to 8192 bits")));
    }
    Ok(pkcs1)
}

/// The label and the decoded contents of the first PEM block.
fn pem_decode(pem: &str) -> Option<(String, Vec<u8>)> {
    let mut lines = pem.lines().map(str::trim);
    let label = lines.find_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))?;
    let end = format!("-----END {label}-----");
    let mut base64 = String::new();
    for line in lines.by_ref() {
        if line == end {
            let der = base64::engine::general_purpose::STANDARD.decode(base64).ok()?;
            return Some((label.to_string(), der));
        }
        base64.push_str(line);
    }
    None
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
/// 1.2.840.113549.1.1.1, rsaEncryption, DER-encoded.
const OID_RSA_ENCRYPTION: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The RSAPublicKey inside a SubjectPublicKeyInfo (RFC 5280 §4.1):
///
/// ```text
/// SubjectPublicKeyInfo ::= SEQUENCE {
///     algorithm         SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY },  -- rsaEncryption, NULL
///     subjectPublicKey  BIT STRING }  -- a 0 "unused bits" byte, then the RSAPublicKey's DER
/// ```
///
/// ring only takes the inner key, so this walks the three TLVs above and no further: ring parses the key itself.
fn spki_rsa_public_key(spki: &[u8]) -> Result<&[u8], SignatureError> {
    let bad = |why: &str| SignatureError::BadKey { why: why.to_string() };
    let fields = der_sequence(spki).ok_or_else(|| bad("not a SubjectPublicKeyInfo"))?;
    let (algorithm, rest) = der_take(fields, TAG_SEQUENCE).ok_or_else(|| bad("not a SubjectPublicKeyInfo"))?;
    let (oid, _parameters) = der_take(algorithm, TAG_OID).ok_or_else(|| bad("not a SubjectPublicKeyInfo"))?;
    if oid != OID_RSA_ENCRYPTION {
        return Err(bad("not an RSA key (rsa-sha256 needs one)"));
    }
    match der_take(rest, TAG_BIT_STRING) {
        Some(([0, key @ ..], [])) => Ok(key),
        _ => Err(bad("not a SubjectPublicKeyInfo")),
    }
}

/// The contents of `der` when it is exactly one SEQUENCE.
fn der_sequence(der: &[u8]) -> Option<&[u8]> {
    match der_take(der, TAG_SEQUENCE)? {
        (contents, []) => Some(contents),
        _ => None,
    }
}

/// Splits one DER element with the `expected` tag off the front of `input`: its contents and what follows.
/// Lengths are short form (< 128) or long form with 1 to 4 length bytes; BER's indefinite length is not DER.
fn der_take(input: &[u8], expected: u8) -> Option<(&[u8], &[u8])> {
    let [tag, first, rest @ ..] = input else { return None };
    if *tag != expected {
        return None;
    }
    let (len, rest) = if *first < 0x80 {
        (usize::from(*first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        (len_bytes.iter().fold(0usize, |len, &b| len << 8 | usize::from(b)), rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The bit length of a positive DER INTEGER (which has a leading 0 byte when its top bit is set).
fn integer_bits(bytes: &[u8]) -> usize {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    match bytes.get(start) {
        Some(top) => (bytes.len() - start) * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}
