//! Signed cookie values, like Tornado's `set_secure_cookie`.
//!
//! A signed value reads `VERSION|EXPIRES|VALUE|SIGNATURE`: the key version that
//! signed it, the expiry as Unix seconds, the value in URL-safe base64, and an
//! HMAC-SHA256 over the cookie's name and the first three fields. A value
//! whose signature does not verify under the key of its version, or whose
//! expiry has passed, reads as absent.
//!
//! Keys come from an app variable (see
//! [`Application::cookie_secret_variable`](crate::Application::cookie_secret_variable)):
//! either one secret (key version 0), or a comma-separated list of
//! `VERSION:SECRET` pairs whose first pair signs new cookies and all of which
//! verify — rotate a key by putting a new version first and dropping the old
//! one once its cookies have expired.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The keys signed cookies are signed and verified with.
#[derive(Clone)]
pub(crate) struct CookieKeys {
    /// Version and secret of the key that signs; it is also in `all`.
    signing: (u32, Vec<u8>),
    all: Vec<(u32, Vec<u8>)>,
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: Vec<u32> = self.all.iter().map(|(v, _)| *v).collect();
        f.debug_struct("CookieKeys")
            .field("signing_version", &self.signing.0)
            .field("versions", &versions)
            .finish()
    }
}

impl CookieKeys {
    /// Parses a variable's value: `SECRET`, or `VERSION:SECRET[,VERSION:SECRET…]`.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("the cookie secret is empty".to_owned());
        }
        let versioned: Option<Vec<(u32, Vec<u8>)>> = value
            .split(',')
            .map(|pair| {
                let (version, secret) = pair.trim().split_once(':')?;
                let version = version.parse().ok()?;
                Some((version, secret.as_bytes().to_vec()))
            })
            .collect();
        let all = versioned.unwrap_or_else(|| vec![(0, value.as_bytes().to_vec())]);
        if all.iter().any(|(_, secret)| secret.is_empty()) {
            return Err("a cookie secret is empty".to_owned());
        }
        for (i, (version, _)) in all.iter().enumerate() {
            if all[..i].iter().any(|(v, _)| v == version) {
                return Err(format!("key version {version} is listed twice"));
            }
        }
        Ok(Self {
            signing: all[0].clone(),
            all,
        })
    }

    /// Signs `value` for the cookie `name`, valid until `expires` (Unix seconds).
    pub(crate) fn sign(&self, name: &str, value: &str, expires: u64) -> String {
        let (version, secret) = &self.signing;
        let payload = format!("{version}|{expires}|{}", URL_SAFE_NO_PAD.encode(value));
        let signature = URL_SAFE_NO_PAD.encode(mac(secret, name, &payload).finalize().into_bytes());
        format!("{payload}|{signature}")
    }

    /// The value signed into `signed` for the cookie `name`, if the signature
    /// verifies and it has not expired at `now` (Unix seconds).
    pub(crate) fn verify(&self, name: &str, signed: &str, now: u64) -> Option<String> {
        let (payload, signature) = signed.rsplit_once('|')?;
        let mut fields = payload.splitn(3, '|');
        let version: u32 = fields.next()?.parse().ok()?;
        let expires: u64 = fields.next()?.parse().ok()?;
        let encoded = fields.next()?;
        let (_, secret) = self.all.iter().find(|(v, _)| *v == version)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        mac(secret, name, payload).verify_slice(&signature).ok()?;
        if now >= expires {
            return None;
        }
        String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()
    }
}

fn mac(secret: &[u8], name: &str, payload: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(name.as_bytes());
    mac.update(b"|");
    mac.update(payload.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_value_verifies_until_it_expires() {
        let keys = CookieKeys::parse("s3cret").unwrap();
        let signed = keys.sign("session", "ada lovelace|1", 1_000);
        assert!(signed.starts_with("0|1000|"), "{signed}");
        assert_eq!(
            keys.verify("session", &signed, 999).as_deref(),
            Some("ada lovelace|1")
        );
        assert_eq!(keys.verify("session", &signed, 1_000), None);
    }

    #[test]
    fn tampering_with_any_part_fails() {
        let keys = CookieKeys::parse("s3cret").unwrap();
        let signed = keys.sign("session", "ada", 1_000);
        assert_eq!(keys.verify("other", &signed, 0), None, "bound to the name");
        let other_value = keys.sign("session", "bob", 1_000);
        let (_, bob_sig) = other_value.rsplit_once('|').unwrap();
        let (payload, _) = signed.rsplit_once('|').unwrap();
        assert_eq!(
            keys.verify("session", &format!("{payload}|{bob_sig}"), 0),
            None
        );
        let later = signed.replacen("|1000|", "|9999|", 1);
        assert_eq!(keys.verify("session", &later, 0), None, "expiry is signed");
        for bad in ["", "ada", "0|1000|YWRh", "0|1000|YWRh|", "x|1|YWRh|sig"] {
            assert_eq!(keys.verify("session", bad, 0), None, "{bad}");
        }
        let wrong_key = CookieKeys::parse("another").unwrap();
        assert_eq!(wrong_key.verify("session", &signed, 0), None);
    }

    #[test]
    fn rotation_signs_with_the_first_key_and_verifies_with_all() {
        let old = CookieKeys::parse("1:old-secret").unwrap();
        let rotated = CookieKeys::parse("2:new-secret, 1:old-secret").unwrap();
        let only_new = CookieKeys::parse("2:new-secret").unwrap();
        let from_old = old.sign("s", "v", 100);
        let from_new = rotated.sign("s", "v", 100);
        assert!(from_new.starts_with("2|"), "{from_new}");
        assert_eq!(rotated.verify("s", &from_old, 0).as_deref(), Some("v"));
        assert_eq!(rotated.verify("s", &from_new, 0).as_deref(), Some("v"));
        assert_eq!(only_new.verify("s", &from_old, 0), None);
        assert_eq!(old.verify("s", &from_new, 0), None);
    }

    #[test]
    fn key_lists_are_validated() {
        assert!(CookieKeys::parse("").is_err());
        assert!(CookieKeys::parse("1:a,1:b").is_err());
        assert!(CookieKeys::parse("1:").is_err());
        // Not every item is `N:secret`, so the whole value is one version-0 key.
        let plain = CookieKeys::parse("a:b,c").unwrap();
        assert!(plain.sign("s", "v", 1).starts_with("0|"));
    }
}
