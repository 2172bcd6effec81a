//! Sign-in sessions of the operator's page: a random token in an HttpOnly, SameSite=Strict
//! cookie, looked up by its SHA-256 in memory (the API key itself is never kept, and a
//! restart signs everyone out), expiring after `ops.session_ttl_secs`, each with the CSRF
//! token its forms must carry. Before sign-in, the form's CSRF token is the double of a
//! short-lived cookie. Sessions live in the process that made them: with several ingest
//! processes behind one name, the balancer must keep an operator on one (or they sign in
//! again). A token is never logged, and never stored but as its hash.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use ring::rand::{SecureRandom, SystemRandom};

use crate::auth::Caller;

/// The session cookie's name.
pub const COOKIE: &str = "asepsis_ops";
/// The pre-sign-in CSRF cookie's name.
pub const SIGN_IN_COOKIE: &str = "asepsis_ops_signin";

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant: String,
    pub key_id: String,
    /// What every state-changing form of this session carries.
    pub csrf: String,
    expires: Instant,
}

/// Every live session of this process.
pub struct Sessions {
    ttl: Duration,
    by_hash: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_hash: Mutex::new(HashMap::new()),
        }
    }

    /// Sign `caller` in: the new session's token (for the cookie) and the session.
    pub fn open(&self, caller: &Caller) -> Option<(String, Session)> {
        let token = random_hex()?;
        let session = Session {
            tenant: caller.tenant.clone(),
            key_id: caller.key_id.clone(),
            csrf: random_hex()?,
            expires: Instant::now().checked_add(self.ttl)?,
        };
        let mut all = self.by_hash.lock().ok()?;
        let now = Instant::now();
        all.retain(|_, s| s.expires > now);
        all.insert(hash(&token), session.clone());
        Some((token, session))
    }

    /// The live session the request's cookie names; an expired one is dropped.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let token = cookie(headers, COOKIE)?;
        let mut all = self.by_hash.lock().ok()?;
        let key = hash(&token);
        match all.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                all.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Sign out the session the request's cookie names.
    pub fn close(&self, headers: &HeaderMap) {
        if let (Some(token), Ok(mut all)) = (cookie(headers, COOKIE), self.by_hash.lock()) {
            all.remove(&hash(&token));
        }
    }

    /// Seconds a new session lives, for the cookie's Max-Age.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }
}

/// 32 random bytes, hex.
pub fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn hash(token: &str) -> String {
    asepsis_common::sha256_hex(token.as_bytes())
}

/// The value of the cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value for the page's cookies: HttpOnly, SameSite=Strict, path `/ops`, and
/// Secure when the request came over TLS (a proxy in front says so).
pub fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: u64,
) -> Option<HeaderValue> {
    let tls = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if tls { "; Secure" } else { "" };
    let cookie =
        format!("{name}={value}; Path=/ops; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            tenant: "t".into(),
            role: asepsis_common::apikey::Role::Operator,
            key_id: "k".into(),
        }
    }

    fn with_cookie(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("other=1; {COOKIE}={token}");
        headers.insert(header::COOKIE, HeaderValue::from_str(&value).unwrap());
        headers
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_is_closed() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (token, session) = sessions.open(&caller()).unwrap();
        let found = sessions.find(&with_cookie(&token)).unwrap();
        assert_eq!((found.key_id.as_str(), found.csrf), ("k", session.csrf));
        assert!(sessions.find(&with_cookie("nope")).is_none());
        sessions.close(&with_cookie(&token));
        assert!(sessions.find(&with_cookie(&token)).is_none());
    }

    #[test]
    fn an_expired_session_is_refused() {
        let sessions = Sessions::new(Duration::ZERO);
        let (token, _) = sessions.open(&caller()).unwrap();
        assert!(sessions.find(&with_cookie(&token)).is_none());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        let mut headers = HeaderMap::new();
        let plain = set_cookie(&headers, COOKIE, "v", 5).unwrap();
        assert_eq!(
            plain,
            "asepsis_ops=v; Path=/ops; HttpOnly; SameSite=Strict; Max-Age=5"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let tls = set_cookie(&headers, COOKIE, "v", 5).unwrap();
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
    }
}
