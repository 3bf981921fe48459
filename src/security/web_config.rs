//! `--web.config.file`: the Prometheus / exporter-toolkit web configuration, so that
//! an existing file loads unchanged, plus ODIN's own `odin:` section (roles).
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   alice: $2y$10$...            # bcrypt
//! odin:
//!   users:
//!     alice: { roles: [read, write, admin] }
//! ```
//!
//! Relative paths are relative to the file's folder, as exporter-toolkit resolves
//! them. Every key ODIN does not act on is an error naming it, as for the main
//! configuration: a security setting silently ignored is worse than a refusal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Role;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("read web config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parse web config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("web config {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub http_server_config: HttpServerConfig,
    /// User name → bcrypt hash of the password.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    pub odin: OdinSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_auth_type: ClientAuth,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
    #[serde(default)]
    pub max_version: Option<TlsVersion>,
    /// Go's names; they choose TLS 1.2's suites (TLS 1.3's are not configurable,
    /// as in Go).
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Go's names (`X25519`, `CurveP256`, `CurveP384`).
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    /// Whether the server's order of cipher suites wins over the client's.
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
}

/// exporter-toolkit's `client_auth_type` values that ODIN offers. Go's
/// `RequestClientCert` and `RequireAnyClientCert` accept a certificate nobody
/// verified: ODIN verifies every client certificate it asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    #[default]
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "TLS12")]
    Tls12,
    #[serde(rename = "TLS13")]
    Tls13,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Whether HTTP/2 is offered (exporter-toolkit's default: yes).
    #[serde(default)]
    pub http2: Option<bool>,
    /// Headers added to every response; exporter-toolkit's list of allowed names.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The headers exporter-toolkit lets a web config set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// ODIN's own part of the web config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdinSection {
    /// Roles per basic-auth user; a user not listed here has every role (a
    /// Prometheus web config, where any user may do anything, keeps its meaning).
    #[serde(default)]
    pub users: BTreeMap<String, UserSection>,
    /// Bearer tokens, stored as the SHA-256 of the token (a token is a long random
    /// string, so a fast hash is enough; the token itself stays with its holder).
    #[serde(default)]
    pub tokens: Vec<TokenSection>,
    /// The cluster port's mutual TLS; by default the `tls_server_config`
    /// certificate, key and `client_ca_file` (see [`WebConfig::cluster_tls`]).
    #[serde(default)]
    pub cluster_tls: Option<ClusterTlsSection>,
    /// OpenID Connect JWTs as bearer tokens (see [`super::oidc`]).
    #[serde(default)]
    pub oidc: Option<super::oidc::OidcSection>,
}

/// A node's certificate (used as server and as client: both key usages), its key,
/// and the CA that issued every peer's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsSection {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// Who holds it, for the logs.
    pub name: String,
    /// Hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    pub roles: Vec<Role>,
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &shown, base)
    }

    /// Parses and checks `text`; relative paths are taken from `base`.
    pub fn parse(text: &str, shown: &str, base: &Path) -> Result<WebConfig, WebConfigError> {
        let mut cfg: WebConfig = if text.trim().is_empty() {
            WebConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| WebConfigError::Parse {
                path: shown.to_string(),
                message: e.to_string(),
            })?
        };
        let invalid = |message: String| WebConfigError::Invalid {
            path: shown.to_string(),
            message,
        };
        if let Some(tls) = &mut cfg.tls_server_config {
            for p in [&mut tls.cert_file, &mut tls.key_file] {
                if p.as_os_str().is_empty() {
                    return Err(invalid(
                        "tls_server_config needs cert_file and key_file".into(),
                    ));
                }
                *p = base.join(&*p);
            }
            if let Some(ca) = &mut tls.client_ca_file {
                *ca = base.join(&*ca);
            }
            let verifies = tls.client_auth_type != ClientAuth::NoClientCert;
            if verifies && tls.client_ca_file.is_none() {
                return Err(invalid(format!(
                    "client_auth_type {:?} needs client_ca_file",
                    tls.client_auth_type
                )));
            }
            if let (Some(min), Some(max)) = (tls.min_version, tls.max_version) {
                if min > max {
                    return Err(invalid("min_version is above max_version".into()));
                }
            }
            // Names are checked here, so a typo stops the start, not a handshake.
            super::tls::cipher_suites(&tls.cipher_suites).map_err(invalid)?;
            super::tls::key_exchange_groups(&tls.curve_preferences).map_err(invalid)?;
        }
        for name in cfg.http_server_config.headers.keys() {
            if !ALLOWED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(invalid(format!(
                    "http_server_config.headers: {name} may not be set (allowed: {})",
                    ALLOWED_HEADERS.join(", ")
                )));
            }
        }
        for (user, hash) in &cfg.basic_auth_users {
            if bcrypt_cost(hash).is_none() {
                return Err(invalid(format!(
                    "basic_auth_users.{user}: not a bcrypt hash ($2a$, $2b$ or $2y$)"
                )));
            }
        }
        if let Some(c) = &mut cfg.odin.cluster_tls {
            for p in [&mut c.cert_file, &mut c.key_file, &mut c.ca_file] {
                *p = base.join(&*p);
            }
        }
        for token in &cfg.odin.tokens {
            let hex = &token.sha256;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "odin.tokens {}: sha256 must be 64 hex digits (the token's SHA-256)",
                    token.name
                )));
            }
        }
        if let Some(oidc) = &mut cfg.odin.oidc {
            oidc.validate(base).map_err(invalid)?;
        }
        for user in cfg.odin.users.keys() {
            if !cfg.basic_auth_users.contains_key(user) {
                return Err(invalid(format!(
                    "odin.users.{user}: no such user in basic_auth_users"
                )));
            }
        }
        Ok(cfg)
    }

    /// The cluster port's mutual TLS: `odin.cluster_tls`, else the HTTP port's
    /// certificate and client CA. `Ok(None)`: no TLS configured, peers talk plain
    /// gRPC. An error when TLS is configured without a CA to verify peers by.
    pub fn cluster_tls(&self) -> Result<Option<ClusterTlsSection>, String> {
        if let Some(c) = &self.odin.cluster_tls {
            return Ok(Some(c.clone()));
        }
        let Some(tls) = &self.tls_server_config else {
            return Ok(None);
        };
        let ca_file = tls.client_ca_file.clone().ok_or(
            "cluster peers need mutual TLS when TLS is configured: set client_ca_file (the \
             CA of every peer's certificate) or odin.cluster_tls",
        )?;
        Ok(Some(ClusterTlsSection {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            ca_file,
        }))
    }

    /// Whether requests must carry credentials.
    pub fn requires_auth(&self) -> bool {
        !self.basic_auth_users.is_empty()
            || !self.odin.tokens.is_empty()
            || self.odin.oidc.is_some()
    }

    /// The roles of a basic-auth user (every role unless `odin.users` says).
    pub fn roles_of(&self, user: &str) -> super::RoleSet {
        match self.odin.users.get(user) {
            Some(u) => u.roles.iter().copied().collect(),
            None => super::RoleSet::ALL,
        }
    }
}

/// The cost of a bcrypt hash in modular crypt format, if it is one.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))?;
    let (cost, salted) = rest.split_once('$')?;
    (salted.len() == 53).then_some(())?;
    cost.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$X0/5Ys.yDg8gB3mGqGgQ3eJ8o5cXn8r1lq7T3bT3zWJrE4jYw0q6K";

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, "web.yml", Path::new("/etc/odin"))
    }

    #[test]
    fn a_prometheus_web_config_loads_with_paths_from_its_folder() {
        let cfg = parse(&format!(
            "tls_server_config:\n  cert_file: s.crt\n  key_file: /abs/s.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS12\n  max_version: TLS13\n  \
             cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: true\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  alice: '{HASH}'\n  bob: '{HASH}'\n\
             odin:\n  users:\n    bob: {{ roles: [read] }}\n  tokens:\n  - name: grafana\n    \
             sha256: {}\n    roles: [read]\n",
            "ab".repeat(32)
        ))
        .unwrap();
        let tls = cfg.tls_server_config.as_ref().unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/odin/s.crt"));
        assert_eq!(tls.key_file, Path::new("/abs/s.key"));
        assert_eq!(
            tls.client_ca_file.as_deref(),
            Some(Path::new("/etc/odin/ca.crt"))
        );
        assert_eq!(tls.client_auth_type, ClientAuth::RequireAndVerifyClientCert);
        assert!(cfg.requires_auth());
        assert_eq!(cfg.roles_of("alice"), crate::security::RoleSet::ALL);
        assert!(cfg.roles_of("bob").has(Role::Read));
        assert!(!cfg.roles_of("bob").has(Role::Write));
    }

    #[test]
    fn what_odin_does_not_act_on_is_an_error_naming_it() {
        let cases = [
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
                "RequireAnyClientCert",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
                "TLS10",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
                "TLS_RSA_WITH_RC4_128_SHA",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [CurveP521]\n",
                "CurveP521",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_ca_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
                "min_version",
            ),
            ("tls_server_config:\n  cert_file: a\n", "key_file"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cert: inline\n",
                "cert",
            ),
            (
                "http_server_config:\n  headers:\n    Server: odin\n",
                "Server",
            ),
            ("basic_auth_users:\n  alice: plaintext\n", "bcrypt"),
            ("odin:\n  users:\n    carol: { roles: [read] }\n", "carol"),
            ("odin:\n  users:\n    carol: { roles: [root] }\n", "root"),
            (
                "odin:\n  tokens:\n  - { name: t, sha256: abc, roles: [read] }\n",
                "64 hex",
            ),
            ("rate_limit: 1\n", "rate_limit"),
        ];
        for (text, named) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(named), "{text:?}: {err} should name {named}");
        }
        assert!(!parse("").unwrap().requires_auth());
    }
}
