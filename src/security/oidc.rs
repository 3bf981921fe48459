//! OpenID Connect: bearer JWTs issued by an identity provider, so that Grafana
//! forwarding its user's token (or an oauth2-proxy in front) authenticates as that
//! user, with roles taken from a claim.
//!
//! ```yaml
//! odin:
//!   oidc:
//!     issuer: https://sso.example.com/realms/ops
//!     audience: odin
//!     jwks_url: https://sso.example.com/realms/ops/protocol/openid-connect/certs
//!     # or jwks_file: jwks.json
//!     jwks_refresh_interval: 15m
//!     clock_skew: 1m
//!     roles_claim: groups            # a dotted path: realm_access.roles
//!     role_mapping:
//!       odin-admins: [read, write, admin]
//!       sre: [read]
//!     default_roles: []
//!     username_claim: preferred_username
//! ```
//!
//! A token is accepted when it is signed (RS256 or ES256 only: `none` and HMAC are
//! refused whatever the header says) by a key of the JWKS, names the configured
//! issuer and audience, has an expiry, and is neither expired nor before its
//! not-before time, both checked with `clock_skew` of slack. The key is the JWKS
//! entry with the header's `kid`, or, without a `kid`, any key of the header's
//! algorithm.
//!
//! Keys come from `jwks_file` (read at start, on reload and when a token names a key
//! it lacks) or `jwks_url` (fetched in the background every `jwks_refresh_interval`,
//! and sooner, at most every [`MIN_FETCH_GAP`], when a token names a key the set
//! lacks: what an identity provider's key rotation looks like). A failed fetch
//! keeps the keys there are and is retried; until the first fetch succeeds, every
//! JWT is refused (401), which an identity provider down at start-up must not turn
//! into a node that does not start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use serde_json::Value;

use super::{Role, RoleSet};
use crate::config::DurationMs;

/// The soonest a JWKS URL is fetched again after a fetch, whatever asks for it.
pub const MIN_FETCH_GAP: Duration = Duration::from_secs(10);
/// Largest JWKS document read (a real one is a few kilobytes).
const MAX_JWKS_BYTES: usize = 1 << 20;
/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The web config's `odin.oidc`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// A value the token's `aud` must contain (the client id ODIN's tokens are for).
    pub audience: String,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_refresh")]
    pub jwks_refresh_interval: DurationMs,
    #[serde(default = "default_skew")]
    pub clock_skew: DurationMs,
    /// Where the roles are: a claim name, or a dotted path into nested objects.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim value → roles. Without a mapping, claim values that name a role
    /// (`read`, `write`, `admin`) are that role.
    #[serde(default)]
    pub role_mapping: BTreeMap<String, Vec<Role>>,
    /// Roles every valid token has.
    #[serde(default)]
    pub default_roles: Vec<Role>,
    /// The claim naming the user in the logs (else `sub`).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
}

fn default_refresh() -> DurationMs {
    DurationMs(15 * 60_000)
}
fn default_skew() -> DurationMs {
    DurationMs(60_000)
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_username_claim() -> String {
    "preferred_username".into()
}

impl OidcSection {
    /// Checks what serde cannot; relative paths are taken from `base`.
    pub fn validate(&mut self, base: &std::path::Path) -> Result<(), String> {
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err("odin.oidc needs issuer and audience".into());
        }
        match (&mut self.jwks_file, &self.jwks_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("odin.oidc needs exactly one of jwks_file and jwks_url".into());
            }
            (Some(file), None) => {
                *file = base.join(&*file);
                let bytes = std::fs::read(&*file)
                    .map_err(|e| format!("odin.oidc.jwks_file {}: {e}", file.display()))?;
                parse_jwks(&bytes)
                    .map_err(|e| format!("odin.oidc.jwks_file {}: {e}", file.display()))?;
            }
            (None, Some(url)) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| format!("odin.oidc.jwks_url {url:?}: {e}"))?;
                // Over plain HTTP anyone on the path could hand ODIN their own keys;
                // only a provider on this host may be reached that way.
                let loopback = match parsed.host_str() {
                    Some("localhost") => true,
                    Some(host) => host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback()),
                    None => false,
                };
                match parsed.scheme() {
                    "https" => {}
                    "http" if loopback => {}
                    "http" => {
                        return Err(format!(
                            "odin.oidc.jwks_url {url:?}: must be https (plain http only to this host)"
                        ));
                    }
                    _ => return Err(format!("odin.oidc.jwks_url {url:?}: not an https URL")),
                }
            }
        }
        if self.jwks_refresh_interval.0 < MIN_FETCH_GAP.as_millis() as i64 {
            return Err(format!(
                "odin.oidc.jwks_refresh_interval: at least {}s",
                MIN_FETCH_GAP.as_secs()
            ));
        }
        if self.clock_skew.0 < 0 || self.clock_skew.0 > 10 * 60_000 {
            return Err("odin.oidc.clock_skew: between 0s and 10m".into());
        }
        Ok(())
    }

    fn same_keys_as(&self, other: &OidcSection) -> bool {
        self.jwks_file == other.jwks_file && self.jwks_url == other.jwks_url
    }
}

/// One verification key of a JWKS.
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The usable keys of a JWKS document: RSA keys (RS256) and P-256 keys (ES256) meant
/// for signatures. Other entries (encryption keys, other curves, symmetric keys) are
/// passed over; a document without one usable key is an error.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<Value>,
    }
    let doc: Doc = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    for entry in doc.keys {
        // Entries this library cannot read at all (kty it does not know) are passed
        // over like the ones it reads but ODIN does not use.
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry) else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        // A key that names its algorithm is used for that one only.
        if let Some(named) = jwk.common.key_algorithm {
            if named.to_string() != format!("{alg:?}") {
                continue;
            }
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err("no RS256 or ES256 signing key in the set".into());
    }
    Ok(keys)
}

/// Why a JWT was refused, for the logs (the client only learns "401").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefused {
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted (RS256, ES256)")]
    Algorithm(Algorithm),
    #[error("no key for it (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("{0}")]
    Invalid(String),
}

/// Verifies JWTs against one `odin.oidc` section and its keys.
pub struct Oidc {
    cfg: OidcSection,
    keys: RwLock<Arc<Vec<Key>>>,
    /// When the keys were last fetched or read, for [`MIN_FETCH_GAP`].
    fetched_at: Mutex<Option<Instant>>,
    /// Set when a token named a key the set lacks (the refresher fetches soon),
    /// cleared when a fetch starts; `wake` tells the refresher.
    wanted: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Oidc {
    /// The verifier for `cfg`. A file's keys are read now; a URL's keys come with
    /// the first fetch ([`Oidc::refresh`]), unless `previous` (the verifier of the
    /// config this one replaces) has keys from the same place: those carry over.
    pub fn new(cfg: &OidcSection, previous: Option<&Oidc>) -> Oidc {
        let inherited = previous
            .filter(|p| p.cfg.same_keys_as(cfg))
            .map(|p| (p.keys.read().clone(), *p.fetched_at.lock()));
        let (keys, fetched_at) = inherited.unwrap_or_default();
        let oidc = Oidc {
            cfg: cfg.clone(),
            keys: RwLock::new(keys),
            fetched_at: Mutex::new(fetched_at),
            wanted: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        };
        if let Some(file) = &cfg.jwks_file {
            if let Err(e) = oidc.read_file(file) {
                tracing::error!(error = %e, "odin.oidc: JWTs are refused until the key file reads");
            }
        }
        oidc
    }

    fn read_file(&self, file: &std::path::Path) -> Result<(), String> {
        self.wanted.store(false, Ordering::Release);
        *self.fetched_at.lock() = Some(Instant::now());
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let keys = parse_jwks(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        *self.keys.write() = Arc::new(keys);
        Ok(())
    }

    /// The principal a JWT stands for. Called for every bearer token that is not
    /// one of the configured static tokens.
    pub fn verify(&self, token: &str) -> Result<(String, RoleSet), JwtRefused> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtRefused::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(JwtRefused::Algorithm(header.alg));
        }
        let mut keys = self.keys.read().clone();
        if !has_key(&keys, header.kid.as_deref(), header.alg) {
            self.want_keys();
            // A key file is cheap to read again: a rotated key works at once.
            if let Some(file) = &self.cfg.jwks_file {
                if self.fetch_allowed() {
                    let _ = self.read_file(file);
                    keys = self.keys.read().clone();
                }
            }
        }
        let candidates = keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .filter(|k| header.kid.is_none() || k.kid == header.kid);
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.cfg.issuer]);
        validation.set_audience(&[&self.cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = (self.cfg.clock_skew.0 / 1000) as u64;
        validation.validate_nbf = true;
        let mut last = JwtRefused::UnknownKey(header.kid.clone());
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => return Ok(self.principal(&data.claims)),
                Err(e) => last = JwtRefused::Invalid(e.to_string()),
            }
        }
        Err(last)
    }

    /// The user name and roles the claims give.
    fn principal(&self, claims: &Value) -> (String, RoleSet) {
        let name = [self.cfg.username_claim.as_str(), "sub"]
            .iter()
            .find_map(|c| claims.get(c).and_then(Value::as_str))
            .unwrap_or("<oidc>")
            .to_string();
        let mut roles: Vec<Role> = self.cfg.default_roles.clone();
        for value in claim_values(claims, &self.cfg.roles_claim) {
            if self.cfg.role_mapping.is_empty() {
                roles.extend(match value {
                    "read" => Some(Role::Read),
                    "write" => Some(Role::Write),
                    "admin" => Some(Role::Admin),
                    _ => None,
                });
            } else if let Some(mapped) = self.cfg.role_mapping.get(value) {
                roles.extend(mapped);
            }
        }
        (name, roles.into_iter().collect())
    }

    fn fetch_allowed(&self) -> bool {
        self.fetched_at
            .lock()
            .is_none_or(|t| t.elapsed() >= MIN_FETCH_GAP)
    }

    fn want_keys(&self) {
        self.wanted.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Fetches the JWKS URL (a file is read) now, keeping the old keys on failure.
    pub async fn refresh(&self, client: &reqwest::Client) -> Result<usize, String> {
        self.wanted.store(false, Ordering::Release);
        if let Some(file) = &self.cfg.jwks_file {
            self.read_file(file)?;
            return Ok(self.keys.read().len());
        }
        let Some(url) = &self.cfg.jwks_url else {
            // Not reached (a section has a file or a URL); marked fetched so that
            // `due` waits its interval rather than returning at once.
            *self.fetched_at.lock() = Some(Instant::now());
            return Ok(0);
        };
        *self.fetched_at.lock() = Some(Instant::now());
        let bytes = fetch(client, url).await?;
        let keys = parse_jwks(&bytes).map_err(|e| format!("{url}: {e}"))?;
        let n = keys.len();
        *self.keys.write() = Arc::new(keys);
        Ok(n)
    }

    /// Waits until the keys are due for a refresh: the interval since the last one
    /// has passed, or a token asked for a key the set lacks (and the last fetch is
    /// at least [`MIN_FETCH_GAP`] old). `failed` shortens the wait to a retry.
    pub async fn due(&self, failed: bool) {
        let interval = if failed {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(self.cfg.jwks_refresh_interval.0 as u64)
        };
        loop {
            let since = self.fetched_at.lock().map(|t| t.elapsed());
            let Some(since) = since else { return };
            if self.wanted.load(Ordering::Acquire) {
                tokio::time::sleep(MIN_FETCH_GAP.saturating_sub(since)).await;
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval.saturating_sub(since)) => return,
                // Looks again: a wake-up may be left over from a want that the
                // last fetch already met.
                _ = self.wake.notified() => {}
            }
        }
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = client
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("{url}: larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn has_key(keys: &[Key], kid: Option<&str>, alg: Algorithm) -> bool {
    keys.iter()
        .any(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
}

/// The strings at a dotted claim path: a string (split at spaces, as OAuth's
/// `scope` is) or an array of strings.
fn claim_values<'a>(claims: &'a Value, path: &str) -> Vec<&'a str> {
    let mut at = claims;
    for part in path.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return Vec::new(),
        }
    }
    match at {
        Value::String(s) => s.split_whitespace().collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    /// A signing key and the JWKS that publishes it.
    pub(crate) struct Signer {
        pub key: EncodingKey,
        pub alg: Algorithm,
        pub kid: String,
    }

    impl Signer {
        pub fn es256(kid: &str) -> Signer {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            Signer {
                key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
                alg: Algorithm::ES256,
                kid: kid.into(),
            }
        }

        pub fn rs256(kid: &str) -> Signer {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
            Signer {
                key: EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap(),
                alg: Algorithm::RS256,
                kid: kid.into(),
            }
        }

        pub fn jwk(&self) -> Value {
            let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
            jwk.common.key_id = Some(self.kid.clone());
            serde_json::to_value(jwk).unwrap()
        }

        pub fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(self.alg);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, claims, &self.key).unwrap()
        }
    }

    pub(crate) fn jwks(signers: &[&Signer]) -> String {
        serde_json::json!({ "keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>() })
            .to_string()
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn section(dir: &std::path::Path, jwks_text: &str, mapping: &str) -> OidcSection {
        std::fs::write(dir.join("jwks.json"), jwks_text).unwrap();
        let text = format!(
            "issuer: https://idp\naudience: odin\njwks_file: jwks.json\nroles_claim: realm.roles\n{mapping}"
        );
        let mut s: OidcSection = serde_saphyr::from_str(&text).unwrap();
        s.validate(dir).unwrap();
        s
    }

    fn claims(extra: Value) -> Value {
        let mut c = serde_json::json!({
            "iss": "https://idp", "aud": "odin", "sub": "u-1", "preferred_username": "ada",
            "exp": now() + 300, "realm": { "roles": ["sre", "other"] },
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn tokens_verify_with_the_published_keys_and_give_the_mapped_roles() {
        let dir = tempfile::tempdir().unwrap();
        let (ec, rsa) = (Signer::es256("ec-1"), Signer::rs256("rsa-1"));
        let s = section(
            dir.path(),
            &jwks(&[&ec, &rsa]),
            "role_mapping:\n  sre: [read]\n  admins: [admin]\n",
        );
        let oidc = Oidc::new(&s, None);
        for signer in [&ec, &rsa] {
            let (name, roles) = oidc.verify(&signer.sign(&claims(Value::Null))).unwrap();
            assert_eq!(name, "ada");
            assert!(roles.has(Role::Read) && !roles.has(Role::Write) && !roles.has(Role::Admin));
        }
        let admin = claims(serde_json::json!({ "realm": { "roles": "admins sre" } }));
        let (_, roles) = oidc.verify(&ec.sign(&admin)).unwrap();
        assert!(roles.has(Role::Admin) && roles.has(Role::Read));
    }

    #[test]
    fn wrong_issuer_audience_times_and_signers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ec = Signer::es256("ec-1");
        let s = section(dir.path(), &jwks(&[&ec]), "");
        let oidc = Oidc::new(&s, None);
        let t = now();
        for bad in [
            serde_json::json!({ "iss": "https://other" }),
            serde_json::json!({ "aud": "grafana" }),
            serde_json::json!({ "exp": t - 120 }),
            serde_json::json!({ "nbf": t + 120 }),
        ] {
            let refused = oidc.verify(&ec.sign(&claims(bad.clone())));
            assert!(
                matches!(refused, Err(JwtRefused::Invalid(_))),
                "{bad}: {refused:?}"
            );
        }
        // Within the clock skew: accepted.
        let skewed = claims(serde_json::json!({ "exp": t - 30, "nbf": t + 30 }));
        assert!(oidc.verify(&ec.sign(&skewed)).is_ok());
        // No expiry at all: refused.
        let mut forever = claims(Value::Null);
        forever.as_object_mut().unwrap().remove("exp");
        assert!(oidc.verify(&ec.sign(&forever)).is_err());
        // Signed by a key that is not published, under a published kid.
        let impostor = Signer::es256("ec-1");
        assert!(oidc.verify(&impostor.sign(&claims(Value::Null))).is_err());
        // Without a role mapping, values naming roles are roles; others are not.
        let (_, roles) = oidc
            .verify(&ec.sign(&claims(
                serde_json::json!({ "realm": { "roles": ["write", "sre"] } }),
            )))
            .unwrap();
        assert!(roles.has(Role::Write) && !roles.has(Role::Read));
    }

    #[test]
    fn unsigned_and_hmac_tokens_are_refused_whatever_the_header_says() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let ec = Signer::es256("ec-1");
        let oidc = Oidc::new(&section(dir.path(), &jwks(&[&ec]), ""), None);
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let body = b64(&claims(Value::Null));
        let none = format!(
            "{}.{body}.",
            b64(&serde_json::json!({"alg": "none", "kid": "ec-1"}))
        );
        assert!(oidc.verify(&none).is_err());
        let hmac = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(Value::Null),
            &EncodingKey::from_secret(b"ec-1"),
        )
        .unwrap();
        assert_eq!(
            oidc.verify(&hmac),
            Err(JwtRefused::Algorithm(Algorithm::HS256))
        );
        for garbage in ["", "a.b", "a.b.c", "....", "eyJhbGciOiJFUzI1NiJ9.e30."] {
            assert!(oidc.verify(garbage).is_err());
        }
    }

    #[test]
    fn a_rotated_key_in_the_file_is_picked_up_when_a_token_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (Signer::es256("k1"), Signer::es256("k2"));
        let s = section(dir.path(), &jwks(&[&old]), "");
        let oidc = Oidc::new(&s, None);
        assert!(oidc.verify(&old.sign(&claims(Value::Null))).is_ok());
        std::fs::write(dir.path().join("jwks.json"), jwks(&[&new])).unwrap();
        // Within MIN_FETCH_GAP of the last read the file is not read again...
        assert!(oidc.verify(&new.sign(&claims(Value::Null))).is_err());
        // ...after it, it is.
        *oidc.fetched_at.lock() = Some(Instant::now() - MIN_FETCH_GAP);
        assert!(oidc.verify(&new.sign(&claims(Value::Null))).is_ok());
        assert!(oidc.verify(&old.sign(&claims(Value::Null))).is_err());
    }

    #[test]
    fn jwks_documents_keep_only_signing_keys_they_can_use() {
        let ec = Signer::es256("ec");
        let mut enc = ec.jwk();
        enc["use"] = "enc".into();
        enc["kid"] = "enc".into();
        let doc = serde_json::json!({ "keys": [
            { "kty": "oct", "k": "c2VjcmV0", "kid": "sym" },
            { "kty": "weird", "kid": "x" },
            enc,
            ec.jwk(),
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ec"));
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn sections_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |text: &str| -> Result<OidcSection, String> {
            let mut s: OidcSection = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
            s.validate(dir.path())?;
            Ok(s)
        };
        let base = "issuer: https://idp\naudience: odin\n";
        assert!(parse(base).unwrap_err().contains("exactly one of"));
        assert!(parse(&format!("{base}jwks_url: ftp://x/keys\n")).is_err());
        assert!(parse(&format!("{base}jwks_url: http://idp.example/keys\n")).is_err());
        assert!(parse(&format!("{base}jwks_url: http://127.0.0.1:8080/keys\n")).is_ok());
        assert!(parse(&format!("{base}jwks_file: missing.json\n")).is_err());
        assert!(parse(&format!("{base}jwks_url: https://idp/keys\nwhat: 1\n")).is_err());
        assert!(
            parse(&format!(
                "{base}jwks_url: https://idp/keys\njwks_refresh_interval: 1s\n"
            ))
            .is_err()
        );
        let ok = parse(&format!("{base}jwks_url: https://idp/keys\n")).unwrap();
        assert_eq!(ok.jwks_refresh_interval, DurationMs(15 * 60_000));
        assert_eq!(ok.roles_claim, "roles");
    }
}

#[cfg(test)]
mod refresh_tests {
    use super::tests::{Signer, jwks};
    use super::*;
    use crate::security::auth::Authenticator;
    use crate::security::web_config::WebConfig;

    /// Serves `body` to every request, counting them.
    fn serve(body: Arc<Mutex<String>>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.read(&mut [0u8; 4096]);
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = body.lock().clone();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn the_url_is_fetched_at_start_and_again_when_a_token_names_a_new_key() {
        let (k1, k2) = (Signer::es256("k1"), Signer::es256("k2"));
        let body = Arc::new(Mutex::new(jwks(&[&k1])));
        let (url, fetches) = serve(body.clone());
        let cfg = WebConfig::parse(
            &format!(
                "odin:\n  oidc:\n    issuer: https://idp\n    audience: odin\n    jwks_url: {url}\n"
            ),
            "web.yml",
            std::path::Path::new("/"),
        )
        .unwrap();
        let auth = Authenticator::new(&cfg);
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(auth.clone().refresh_oidc_keys(stop.clone()));
        let claims = serde_json::json!({
            "iss": "https://idp", "aud": "odin", "sub": "s", "roles": ["read"],
            "exp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300,
        });
        let oidc = auth.oidc().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while oidc.verify(&k1.sign(&claims)).is_err() {
            assert!(Instant::now() < deadline, "keys never fetched");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        *body.lock() = jwks(&[&k2]);
        // As if the last fetch were long ago: the next one may come at once.
        *oidc.fetched_at.lock() = Some(Instant::now() - MIN_FETCH_GAP);
        let deadline = Instant::now() + Duration::from_secs(5);
        while oidc.verify(&k2.sign(&claims)).is_err() {
            assert!(Instant::now() < deadline, "the new key was never fetched");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
        stop.cancel();
    }
}
