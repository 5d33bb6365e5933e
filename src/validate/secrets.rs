//! Spotting secrets written into flows. A flow is reviewed, committed and shared; a token in it is leaked.
//! Known credential shapes are matched exactly; anything else long and random-looking is flagged too.

/// Why a literal looks like a secret, or `None`.
pub fn looks_like_secret(s: &str) -> Option<&'static str> {
    let t = s.trim();
    const PREFIXES: &[(&str, &str)] = &[
        ("rzp_live_", "a Razorpay live key id"),
        ("rzp_test_", "a Razorpay test key id"),
        ("pit-", "a GHL private integration token"),
        ("sk_live_", "a live secret key"),
        ("sk_test_", "a test secret key"),
        ("xoxb-", "a Slack bot token"),
        ("xoxp-", "a Slack user token"),
        ("ghp_", "a GitHub token"),
        ("AKIA", "an AWS access key id"),
        ("-----BEGIN", "a PEM private key"),
    ];
    for (prefix, what) in PREFIXES {
        if t.starts_with(prefix) && t.len() >= prefix.len() + 8 && !t.contains(' ') {
            return Some(what);
        }
    }
    if t.contains("hooks.slack.com/services/") {
        return Some("a Slack incoming-webhook URL (the URL is the secret)");
    }
    let lower = t.to_ascii_lowercase();
    if (lower.starts_with("bearer ") || lower.starts_with("basic ")) && t.len() > 20 && !t.contains("${{") {
        return Some("an Authorization header value");
    }
    if t.starts_with("eyJ") && t.matches('.').count() == 2 && t.len() > 40 {
        return Some("a JSON Web Token");
    }
    if high_entropy(t) {
        return Some("a long random-looking string (an API key or token)");
    }
    None
}

/// 32+ characters of key alphabet, mixing upper case, lower case and digits, with no spaces or path-like
/// separators: the shape of generated keys, and rarely of anything a person writes.
fn high_entropy(t: &str) -> bool {
    if t.len() < 32 || t.len() > 512 || t.contains(['/', ' ', '.', '@', ':']) {
        return false;
    }
    if !t.chars().all(|c| c.is_ascii_alphanumeric() || "-_+=".contains(c)) {
        return false;
    }
    let upper = t.chars().any(|c| c.is_ascii_uppercase());
    let lower = t.chars().any(|c| c.is_ascii_lowercase());
    let digits = t.chars().filter(char::is_ascii_digit).count();
    upper && lower && digits >= 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_known_shapes_and_random_keys() {
        assert!(looks_like_secret("rzp_live_ILgsfZCZoFIKMb").is_some());
        assert!(looks_like_secret("pit-3f2a9c1e-1111-2222-3333-444455556666").is_some());
        assert!(looks_like_secret("https://hooks.slack.com/services/T000/B000/XXXX").is_some());
        assert!(looks_like_secret("Bearer abcdefghijklmnopqrstuvwxyz").is_some());
        assert!(looks_like_secret("q8Zt3xVb7Kp2Lm9Nw4Rs6Ty1Uc5Ef0Gh").is_some());
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for s in [
            "razorpay-paid",
            "Paid via Razorpay",
            "ve9EPM428h8vShlRW1KT",
            "2021-07-28",
            "https://example.com/a/b",
            "contact.lead_score",
            "pay_29QQoUBi66xm2f",
        ] {
            assert_eq!(looks_like_secret(s), None, "{s}");
        }
    }
}
