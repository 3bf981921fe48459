//! Who is asking, and whether they may.
//!
//! Every HTTP route is listed in [`ROUTE_ROLES`] with the role it needs; the check
//! runs after routing, on the route's pattern, for every request. A route missing
//! from the table is refused (500, logged) with or without authentication
//! configured, so a new route cannot go out unguarded: the first test that calls it
//! fails.
//!
//! Credentials are basic-auth users from the web config (bcrypt hashes, as
//! Prometheus stores them), and bearer tokens (`odin.tokens`: SHA-256 hashes,
//! compared in constant time against every stored one), and OpenID Connect JWTs
//! ([`super::oidc`]) for bearer tokens that are none of those. bcrypt is slow on purpose (tens of milliseconds), so a
//! verified user, password and hash are remembered (by a SHA-256 of the three, never
//! the password) and the next request with them costs a hash; an unknown user is
//! checked against a hash too, so that the answer's timing does not tell which
//! users exist. Answers: no or bad credentials → 401 with `WWW-Authenticate`; the
//! wrong role → 403; neither says more.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::oidc::Oidc;
use super::web_config::WebConfig;
use super::{Role, RoleSet};

/// The role each route needs (`None`: open to anyone), by axum route pattern.
pub const ROUTE_ROLES: &[(&str, Option<Role>)] = &[
    ("/-/healthy", None),
    ("/-/ready", None),
    ("/ready", None),
    ("/-/quit", Some(Role::Admin)),
    ("/-/reload", Some(Role::Admin)),
    ("/metrics", Some(Role::Read)),
    ("/federate", Some(Role::Read)),
    ("/api/v1/write", Some(Role::Write)),
    ("/loki/api/v1/push", Some(Role::Write)),
    ("/api/prom/push", Some(Role::Write)),
    ("/loki/api/v1/query_range", Some(Role::Read)),
    ("/loki/api/v1/query", Some(Role::Read)),
    ("/loki/api/v1/labels", Some(Role::Read)),
    ("/loki/api/v1/label", Some(Role::Read)),
    ("/loki/api/v1/label/{name}/values", Some(Role::Read)),
    ("/loki/api/v1/series", Some(Role::Read)),
    ("/loki/api/v1/tail", Some(Role::Read)),
    ("/loki/api/v1/index/stats", Some(Role::Read)),
    ("/loki/api/v1/index/volume", Some(Role::Read)),
    ("/loki/api/v1/status/buildinfo", Some(Role::Read)),
    ("/loki/api/v1/format_query", Some(Role::Read)),
    ("/api/v1/read", Some(Role::Read)),
    ("/api/v1/query", Some(Role::Read)),
    ("/api/v1/query_range", Some(Role::Read)),
    ("/api/v1/query_exemplars", Some(Role::Read)),
    ("/api/v1/format_query", Some(Role::Read)),
    ("/api/v1/series", Some(Role::Read)),
    ("/api/v1/labels", Some(Role::Read)),
    ("/api/v1/label/{name}/values", Some(Role::Read)),
    ("/api/v1/metadata", Some(Role::Read)),
    ("/api/v1/targets", Some(Role::Read)),
    ("/api/v1/rules", Some(Role::Read)),
    ("/api/v1/alerts", Some(Role::Read)),
    ("/api/v1/alertmanagers", Some(Role::Read)),
    ("/api/v1/targets/metadata", Some(Role::Read)),
    ("/api/v1/status/buildinfo", Some(Role::Read)),
    ("/api/v1/status/config", Some(Role::Read)),
    ("/api/v1/status/flags", Some(Role::Read)),
    ("/api/v1/status/runtimeinfo", Some(Role::Read)),
    ("/api/v1/status/tsdb", Some(Role::Read)),
    ("/api/v1/status/cluster", Some(Role::Read)),
    ("/api/v1/admin/tsdb/delete_series", Some(Role::Admin)),
    ("/api/v1/admin/tsdb/clean_tombstones", Some(Role::Admin)),
    ("/api/v1/admin/tsdb/snapshot", Some(Role::Admin)),
    ("/api/v1/admin/cluster/add", Some(Role::Admin)),
    ("/api/v1/admin/cluster/remove", Some(Role::Admin)),
];

/// Whom a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` when authentication is not configured.
    pub name: Option<String>,
    pub roles: RoleSet,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or wrong ones: 401.
    Unauthenticated,
    /// Authenticated, without the role: 403.
    Forbidden,
    /// Too many failed attempts from this client address lately: 429, without
    /// looking at the credentials (a bcrypt check each would be a way to burn CPU).
    TooManyFailures,
}

/// The address a request came from, put in its extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Failed attempts a client address may make per [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window failed attempts are counted over.
pub const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Addresses remembered at most; past it the oldest windows go.
const FAILING_ADDRESSES_KEPT: usize = 10_000;

/// Failed attempts per client address, in fixed windows.
#[derive(Default)]
struct Failures(Mutex<HashMap<std::net::IpAddr, (std::time::Instant, u32)>>);

impl Failures {
    fn blocked(&self, ip: std::net::IpAddr) -> bool {
        let map = self.0.lock();
        map.get(&ip)
            .is_some_and(|(since, n)| since.elapsed() < FAILURE_WINDOW && *n >= MAX_FAILURES)
    }

    fn record(&self, ip: std::net::IpAddr) {
        let mut map = self.0.lock();
        if map.len() >= FAILING_ADDRESSES_KEPT {
            map.retain(|_, (since, _)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = map.entry(ip).or_insert((std::time::Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (std::time::Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// Verified (user, password, hash) triples remembered at most: past it the memory
/// starts over (a client cycling through passwords gains nothing by it).
const VERIFIED_KEPT: usize = 4096;

/// Checks credentials against the web config's users and tokens; both are replaced
/// whole when the web config is reloaded ([`Authenticator::replace`]).
pub struct Authenticator {
    credentials: parking_lot::RwLock<Arc<Credentials>>,
    failures: Failures,
}

/// One web config's users and tokens.
struct Credentials {
    /// User → (bcrypt hash, roles). Empty: authentication is not configured.
    users: HashMap<String, (String, RoleSet)>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// A hash of the users' cost that an unknown user's password is checked against.
    decoy: OnceLock<String>,
    /// SHA-256 of each bearer token, with its holder's name and roles.
    tokens: Vec<([u8; 32], String, RoleSet)>,
    /// JWTs from an identity provider: bearer tokens that are not one of `tokens`.
    oidc: Option<Arc<Oidc>>,
}

impl Authenticator {
    pub fn new(cfg: &WebConfig) -> Arc<Authenticator> {
        Arc::new(Authenticator {
            credentials: parking_lot::RwLock::new(Arc::new(Credentials::new(cfg, None))),
            failures: Failures::default(),
        })
    }

    /// From now on, the users and tokens of `cfg` (a reloaded web config); requests
    /// being checked finish with the old ones.
    pub fn replace(&self, cfg: &WebConfig) {
        let mut current = self.credentials.write();
        let next = Credentials::new(cfg, current.oidc.as_deref());
        *current = Arc::new(next);
    }

    /// The OIDC verifier of the current web config, if it has one.
    pub fn oidc(&self) -> Option<Arc<Oidc>> {
        self.credentials.read().oidc.clone()
    }

    /// Keeps the OIDC keys fresh (see [`super::oidc`]) until `stop`, following the
    /// verifier through web config reloads.
    pub async fn refresh_oidc_keys(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let client = match reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "odin.oidc: no HTTP client for the JWKS");
                return;
            }
        };
        let mut failed = false;
        loop {
            let Some(oidc) = self.oidc() else {
                // No OIDC now; a reload may bring it.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => continue,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = oidc.due(failed) => {}
                // A reload replaced the verifier: start over with the new one.
                _ = async {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        if !self.oidc().is_some_and(|o| Arc::ptr_eq(&o, &oidc)) {
                            return;
                        }
                    }
                } => continue,
            }
            match oidc.refresh(&client).await {
                Ok(n) => {
                    if failed {
                        tracing::info!(keys = n, "odin.oidc: JWKS loaded again");
                    }
                    failed = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "odin.oidc: JWKS refresh failed; the keys there are stay");
                    failed = true;
                }
            }
        }
    }

    /// No authentication: every request may do everything.
    pub fn open() -> Arc<Authenticator> {
        Self::new(&WebConfig::default())
    }

    pub fn required(&self) -> bool {
        self.credentials.read().required()
    }

    /// The principal these headers name. Blocks for a bcrypt check the first time a
    /// user's password is seen: call it off the async workers.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Denied> {
        let credentials = self.credentials.read().clone();
        credentials.authenticate(headers)
    }

    /// [`Authenticator::authorize`] for a request from `client`, whose failed
    /// attempts are counted and, past [`MAX_FAILURES`] in [`FAILURE_WINDOW`],
    /// refused unseen. Denials go to the audit log (`odin::audit`) with who, what and
    /// from where; `what` names the route or call.
    pub fn check(
        &self,
        headers: &HeaderMap,
        role: Role,
        client: Option<std::net::SocketAddr>,
        what: &str,
    ) -> Result<Principal, Denied> {
        let ip = client.map(|c| c.ip());
        if ip.is_some_and(|ip| self.failures.blocked(ip)) {
            audit_denial(headers, Denied::TooManyFailures, client, what);
            return Err(Denied::TooManyFailures);
        }
        let verdict = self.authorize(headers, role);
        if let Err(denied) = verdict {
            // A request without credentials is how a client learns it needs them
            // (a browser's first try): only credentials that fail count. A refused
            // JWT does not either: its signature cannot be guessed, and refusals
            // (an expired token, a key being rotated) are everyday events for a
            // Grafana that forwards all its users' tokens from one address.
            let presented = headers.contains_key(header::AUTHORIZATION);
            let jwt = self.credentials.read().oidc.is_some()
                && bearer_token(headers).is_some_and(|t| t.split('.').count() == 3);
            if denied == Denied::Unauthenticated && presented && !jwt {
                if let Some(ip) = ip {
                    self.failures.record(ip);
                }
            }
            audit_denial(headers, denied, client, what);
        }
        verdict
    }

    /// Whether a principal with these headers may use a route needing `role`.
    pub fn authorize(&self, headers: &HeaderMap, role: Role) -> Result<Principal, Denied> {
        let principal = self.authenticate(headers)?;
        if principal.roles.has(role) {
            Ok(principal)
        } else {
            Err(Denied::Forbidden)
        }
    }
}

impl Credentials {
    fn new(cfg: &WebConfig, previous_oidc: Option<&Oidc>) -> Credentials {
        let users = cfg
            .basic_auth_users
            .iter()
            .map(|(user, hash)| (user.clone(), (hash.clone(), cfg.roles_of(user))))
            .collect();
        let tokens = cfg
            .odin
            .tokens
            .iter()
            .filter_map(|t| {
                let mut hash = [0u8; 32];
                for (i, byte) in hash.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(t.sha256.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some((hash, t.name.clone(), t.roles.iter().copied().collect()))
            })
            .collect();
        Credentials {
            users,
            verified: Mutex::new(HashSet::new()),
            decoy: OnceLock::new(),
            tokens,
            oidc: cfg
                .odin
                .oidc
                .as_ref()
                .map(|o| Arc::new(Oidc::new(o, previous_oidc))),
        }
    }

    fn required(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty() || self.oidc.is_some()
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Denied> {
        if !self.required() {
            return Ok(Principal {
                name: None,
                roles: RoleSet::ALL,
            });
        }
        if let Some(token) = bearer_token(headers) {
            if let Some(holder) = self.token_holder(token) {
                return Ok(holder);
            }
            let oidc = self.oidc.as_ref().ok_or(Denied::Unauthenticated)?;
            return match oidc.verify(token) {
                Ok((name, roles)) => Ok(Principal {
                    name: Some(name),
                    roles,
                }),
                Err(refused) => {
                    // The denial itself is audited by the caller; this says why.
                    tracing::info!(target: AUDIT, event = "jwt_refused", reason = %refused);
                    Err(Denied::Unauthenticated)
                }
            };
        }
        let (user, password) = basic_credentials(headers).ok_or(Denied::Unauthenticated)?;
        let Some((hash, roles)) = self.users.get(&user) else {
            // The same work as for a known user, so timing does not tell.
            let decoy = self.decoy.get_or_init(|| {
                let cost = self
                    .users
                    .values()
                    .next()
                    .and_then(|(h, _)| h.get(4..6)?.parse().ok())
                    .unwrap_or(bcrypt::DEFAULT_COST);
                bcrypt::hash("odin decoy password", cost).unwrap_or_default()
            });
            let _ = bcrypt::verify(&password, decoy);
            return Err(Denied::Unauthenticated);
        };
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [user.as_bytes(), password.as_bytes(), hash.as_bytes()] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
            h.finalize().into()
        };
        let known = self.verified.lock().contains(&key);
        if !known {
            if !bcrypt::verify(&password, hash).unwrap_or(false) {
                return Err(Denied::Unauthenticated);
            }
            let mut verified = self.verified.lock();
            if verified.len() >= VERIFIED_KEPT {
                verified.clear();
            }
            verified.insert(key);
        }
        Ok(Principal {
            name: Some(user),
            roles: *roles,
        })
    }
}

impl Credentials {
    /// The holder of a bearer token. Every stored hash is compared, each in constant
    /// time, so the time taken tells nothing about which one (or how much of one)
    /// matched.
    fn token_holder(&self, token: &str) -> Option<Principal> {
        use subtle::ConstantTimeEq;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, name, roles) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(Principal {
                    name: Some(name.clone()),
                    roles: *roles,
                });
            }
        }
        found
    }
}

/// Who a refused request claimed to be, for the audit log: the basic-auth user, or
/// that a token was shown (never the token or a password).
fn claimed(headers: &HeaderMap) -> String {
    if let Some((user, _)) = basic_credentials(headers) {
        return user;
    }
    if bearer_token(headers).is_some() {
        return "<bearer token>".into();
    }
    "<none>".into()
}

fn audit_denial(
    headers: &HeaderMap,
    denied: Denied,
    client: Option<std::net::SocketAddr>,
    what: &str,
) {
    let client = client.map_or_else(|| "-".to_string(), |c| c.to_string());
    tracing::warn!(
        target: AUDIT,
        event = "denied",
        reason = ?denied,
        user = %claimed(headers),
        client = %client,
        what,
    );
}

/// The audit log's tracing target: denials, admin actions, configuration reloads.
pub const AUDIT: &str = "odin::audit";

/// The token of an `Authorization: Bearer` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The user and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// What a route (an axum route pattern) needs, from [`ROUTE_ROLES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAccess {
    Open,
    Needs(Role),
    /// Not in the table: refused.
    Unlisted,
}

pub fn access_of(route: &str) -> RouteAccess {
    match ROUTE_ROLES.iter().find(|(r, _)| *r == route) {
        Some((_, None)) => RouteAccess::Open,
        Some((_, Some(role))) => RouteAccess::Needs(*role),
        None => RouteAccess::Unlisted,
    }
}

/// The route layer that checks every request (see the module documentation).
pub async fn require_role(
    State(auth): State<Arc<Authenticator>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = matched.as_ref().map_or("", |m| m.as_str());
    let role = match access_of(route) {
        RouteAccess::Open => return next.run(req).await,
        RouteAccess::Needs(role) => role,
        RouteAccess::Unlisted => {
            tracing::error!(
                route,
                "route has no role in security::auth::ROUTE_ROLES; refused"
            );
            return (StatusCode::INTERNAL_SERVER_ERROR, "route without a role\n").into_response();
        }
    };
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
    // Cheap handles (the URI shares its bytes), formatted only for the audit log.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let what = || format!("{method} {}", uri.path());
    let verdict = if auth.required() {
        let (auth, headers, what) = (auth.clone(), req.headers().clone(), what());
        tokio::task::spawn_blocking(move || auth.check(&headers, role, client, &what))
            .await
            .unwrap_or(Err(Denied::Unauthenticated))
    } else {
        // Nothing to check and nothing to deny: no failures to count, no denial
        // to audit (and no text built for them on every request).
        auth.authorize(req.headers(), role)
    };
    match verdict {
        Ok(principal) => {
            if role == Role::Admin {
                tracing::info!(
                    target: AUDIT,
                    event = "admin",
                    user = principal.name.as_deref().unwrap_or("<no authentication>"),
                    client = %client.map_or_else(|| "-".to_string(), |c| c.to_string()),
                    what = what(),
                );
            }
            let mut req = req;
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(Denied::TooManyFailures) => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed attempts; try again later\n",
        )
            .into_response(),
        Err(Denied::Unauthenticated) => {
            let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ODIN\", Bearer realm=\"ODIN\""),
            );
            r
        }
        Err(Denied::Forbidden) => (StatusCode::FORBIDDEN, "Forbidden\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        h
    }

    fn authenticator() -> Arc<Authenticator> {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let token_hash: String = Sha256::digest(b"tok-123")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let cfg = WebConfig::parse(
            &format!(
                "basic_auth_users:\n  alice: '{hash}'\n  reader: '{hash}'\n\
                 odin:\n  users:\n    reader: {{ roles: [read] }}\n  \
                 tokens:\n  - {{ name: grafana, sha256: {token_hash}, roles: [read] }}\n"
            ),
            "web.yml",
            std::path::Path::new("."),
        )
        .unwrap();
        Authenticator::new(&cfg)
    }

    #[test]
    fn users_passwords_and_roles() {
        let auth = authenticator();
        assert!(auth.required());
        let alice = auth
            .authorize(&basic("alice", "s3cret"), Role::Admin)
            .unwrap();
        assert_eq!(alice.name.as_deref(), Some("alice"));
        // Remembered: the second check of the same credentials is the same answer.
        assert!(
            auth.authorize(&basic("alice", "s3cret"), Role::Write)
                .is_ok()
        );
        assert_eq!(
            auth.authorize(&basic("alice", "wrong"), Role::Read),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            auth.authorize(&basic("mallory", "s3cret"), Role::Read),
            Err(Denied::Unauthenticated)
        );
        assert!(
            auth.authorize(&basic("reader", "s3cret"), Role::Read)
                .is_ok()
        );
        assert_eq!(
            auth.authorize(&basic("reader", "s3cret"), Role::Write),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            auth.authorize(&HeaderMap::new(), Role::Read),
            Err(Denied::Unauthenticated)
        );
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(
            auth.authorize(&bearer, Role::Read),
            Err(Denied::Unauthenticated)
        );
        // Without users, everyone may do everything.
        let open = Authenticator::open();
        assert!(open.authorize(&HeaderMap::new(), Role::Admin).is_ok());
    }

    /// A route nobody gave a role is refused, with or without users configured.
    #[tokio::test]
    async fn a_route_without_a_role_is_refused() {
        use tower::ServiceExt;
        for auth in [Authenticator::open(), authenticator()] {
            let app = axum::Router::new()
                .route("/-/ready", axum::routing::get(|| async { "ok" }))
                .route("/api/v1/new_thing", axum::routing::get(|| async { "leak" }))
                .route_layer(axum::middleware::from_fn_with_state(auth, require_role));
            let call = |path: &'static str| {
                let app = app.clone();
                async move {
                    let req = Request::builder().uri(path).body(axum::body::Body::empty());
                    app.oneshot(req.unwrap()).await.unwrap().status()
                }
            };
            assert_eq!(call("/-/ready").await, StatusCode::OK);
            assert_eq!(
                call("/api/v1/new_thing").await,
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
    }

    #[test]
    fn refused_jwts_are_no_failed_logins_but_wrong_static_tokens_are() {
        use crate::security::oidc::tests::{Signer, jwks};
        let dir = tempfile::tempdir().unwrap();
        let key = Signer::es256("k1");
        std::fs::write(dir.path().join("jwks.json"), jwks(&[&key])).unwrap();
        let cfg = WebConfig::parse(
            "odin:\n  oidc:\n    issuer: https://idp\n    audience: odin\n    jwks_file: jwks.json\n",
            "web.yml",
            dir.path(),
        )
        .unwrap();
        let auth = Authenticator::new(&cfg);
        let grafana: std::net::SocketAddr = "10.0.0.3:5000".parse().unwrap();
        let bearer = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
            );
            h
        };
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = |exp: u64| serde_json::json!({ "iss": "https://idp", "aud": "odin", "sub": "s", "roles": ["read"], "exp": exp });
        // Many expired tokens from one Grafana do not lock its other users out.
        let expired = key.sign(&claims(exp - 3600));
        for _ in 0..3 * MAX_FAILURES {
            assert_eq!(
                auth.check(&bearer(&expired), Role::Read, Some(grafana), "GET /"),
                Err(Denied::Unauthenticated)
            );
        }
        let valid = key.sign(&claims(exp + 300));
        assert!(
            auth.check(&bearer(&valid), Role::Read, Some(grafana), "GET /")
                .is_ok()
        );
        // Guessed static tokens count.
        for _ in 0..MAX_FAILURES {
            let _ = auth.check(&bearer("guess"), Role::Read, Some(grafana), "GET /");
        }
        assert_eq!(
            auth.check(&bearer(&valid), Role::Read, Some(grafana), "GET /"),
            Err(Denied::TooManyFailures)
        );
    }

    #[test]
    fn failed_attempts_from_one_address_are_cut_off() {
        let auth = authenticator();
        let mallory: std::net::SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let alice: std::net::SocketAddr = "10.0.0.1:5000".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                auth.check(&basic("alice", "guess"), Role::Read, Some(mallory), "GET /"),
                Err(Denied::Unauthenticated)
            );
        }
        // Now even the right password from there is refused unseen ...
        assert_eq!(
            auth.check(
                &basic("alice", "s3cret"),
                Role::Read,
                Some(mallory),
                "GET /"
            ),
            Err(Denied::TooManyFailures)
        );
        // ... and other addresses are not affected.
        assert!(
            auth.check(&basic("alice", "s3cret"), Role::Read, Some(alice), "GET /")
                .is_ok()
        );
        // Neither a request without credentials nor a wrong role is a failed login.
        for _ in 0..2 * MAX_FAILURES {
            assert_eq!(
                auth.check(&HeaderMap::new(), Role::Read, Some(alice), "GET /"),
                Err(Denied::Unauthenticated)
            );
        }
        for _ in 0..2 * MAX_FAILURES {
            assert_eq!(
                auth.check(
                    &basic("reader", "s3cret"),
                    Role::Admin,
                    Some(alice),
                    "GET /"
                ),
                Err(Denied::Forbidden)
            );
        }
    }

    #[test]
    fn every_route_in_the_table_once() {
        let mut seen = HashSet::new();
        for (route, _) in ROUTE_ROLES {
            assert!(seen.insert(*route), "{route} twice");
        }
        assert_eq!(access_of("/-/ready"), RouteAccess::Open);
        assert_eq!(access_of("/api/v1/write"), RouteAccess::Needs(Role::Write));
        assert_eq!(access_of("/api/v1/new_thing"), RouteAccess::Unlisted);
    }
}
