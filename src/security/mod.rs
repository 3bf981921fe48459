//! Security as one layer: TLS on the listeners, and who may do what.
//!
//! * [`web_config`]: `--web.config.file`, Prometheus's web configuration format.
//! * [`tls`]: rustls server configurations built from it, re-read when the
//!   certificate files change; the cluster's client identity; outbound client
//!   configurations (scrapes).
//! * [`listen`]: every port's listener (HTTP, StoreAPI, cluster): connection
//!   bounds, first-byte and handshake deadlines, TLS.
//! * [`auth`]: credentials (basic auth with bcrypt hashes) to a principal with roles,
//!   and the per-route role check of the HTTP API ([`auth::ROUTE_ROLES`]).
//! * [`oidc`]: OpenID Connect JWTs (an identity provider's bearer tokens) checked
//!   against its published keys, with roles from a claim.

pub mod auth;
pub mod certs;
pub mod listen;
pub mod oidc;
pub mod tls;
pub mod web_config;

use serde::Deserialize;

/// What a principal may do. Every HTTP route needs exactly one (see
/// [`auth::ROUTE_ROLES`]); `/-/healthy` and `/-/ready` need none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Queries, series, labels, metadata, targets, status, remote read, federation,
    /// `/metrics`.
    Read,
    /// Remote write.
    Write,
    /// The admin API, lifecycle (`/-/quit`, `/-/reload`), cluster membership.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Read => 1,
            Role::Write => 2,
            Role::Admin => 4,
        }
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    pub const ALL: RoleSet = RoleSet(7);

    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        RoleSet(roles.into_iter().fold(0, |bits, r| bits | r.bit()))
    }
}
