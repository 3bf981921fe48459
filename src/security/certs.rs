//! `odin certs`: the certificates a deployment needs, without an openssl script.
//!
//! * `ca`: a CA (`ca.crt`, `ca.key`), ten years by default, that signs the rest and
//!   that every node and client trusts (`client_ca_file`, `ca_file`, Grafana's CA).
//! * `node`: a node's certificate for its HTTP, gRPC and cluster ports: extended key
//!   usages `serverAuth` (its ports) and `clientAuth` (calling its peers), the names
//!   and addresses it is reached at as SANs, one year by default.
//! * `client`: a client's certificate (Grafana, Prometheus, Thanos Query):
//!   `clientAuth` only.
//!
//! Keys are ECDSA P-256, written with mode 0600; nothing is overwritten unless asked.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// What to make.
pub enum Request<'a> {
    Ca {
        name: &'a str,
        days: u32,
    },
    Node {
        name: &'a str,
        hosts: &'a [String],
        days: u32,
    },
    Client {
        name: &'a str,
        days: u32,
    },
}

/// Makes the certificate `request` names in `dir`; returns the files written.
pub fn make(dir: &Path, request: &Request<'_>, overwrite: bool) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (file, params) = match request {
        Request::Ca { name, days } => {
            let mut p = params(name, *days)?;
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            ("ca".to_string(), p)
        }
        Request::Node { name, hosts, days } => {
            if hosts.is_empty() {
                return Err("a node certificate needs at least one --host (a DNS name or an IP address its peers and clients reach it at)".into());
            }
            let mut p = params(name, *days)?;
            p.subject_alt_names = hosts
                .iter()
                .map(|h| match h.parse::<IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => h
                        .clone()
                        .try_into()
                        .map(SanType::DnsName)
                        .map_err(|e| format!("--host {h}: {e}")),
                })
                .collect::<Result<_, String>>()?;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            (name.to_string(), p)
        }
        Request::Client { name, days } => {
            let mut p = params(name, *days)?;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            (name.to_string(), p)
        }
    };
    if file.is_empty() || file.contains(['/', '\\']) || file.starts_with('.') {
        return Err(format!("{file:?} cannot name a file"));
    }
    let cert_path = dir.join(format!("{file}.crt"));
    let key_path = dir.join(format!("{file}.key"));
    if !overwrite {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(format!("{} exists (--force replaces it)", p.display()));
            }
        }
    }
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = match request {
        Request::Ca { .. } => params.self_signed(&key),
        _ => {
            let read = |p: PathBuf| {
                std::fs::read_to_string(&p)
                    .map_err(|e| format!("{}: {e} (make the CA first: odin certs ca)", p.display()))
            };
            let ca_key = KeyPair::from_pem(&read(dir.join("ca.key"))?)
                .map_err(|e| format!("ca.key: {e}"))?;
            let issuer = Issuer::from_ca_cert_pem(&read(dir.join("ca.crt"))?, ca_key)
                .map_err(|e| format!("ca.crt: {e}"))?;
            params.signed_by(&key, &issuer)
        }
    }
    .map_err(|e| e.to_string())?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(vec![cert_path, key_path])
}

fn params(name: &str, days: u32) -> Result<CertificateParams, String> {
    if days == 0 {
        return Err("--days must be at least 1".into());
    }
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "ODIN");
    p.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    // A little back in time, for clocks a little behind this one.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
    Ok(p)
}

/// Writes `bytes` to `path` created with `mode` (a key is never readable by
/// others, not even for a moment).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The files load as a server configuration that verifies clients with the CA,
    /// keys are 0600, and nothing is overwritten unless asked.
    #[test]
    fn a_ca_a_node_and_a_client_that_fit_together() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(
            make(
                d,
                &Request::Node {
                    name: "n1",
                    hosts: &["127.0.0.1".into()],
                    days: 1
                },
                false
            )
            .unwrap_err()
            .contains("make the CA first")
        );
        make(
            d,
            &Request::Ca {
                name: "ODIN CA",
                days: 10,
            },
            false,
        )
        .unwrap();
        let hosts = ["odin-1.example".to_string(), "127.0.0.1".to_string()];
        make(
            d,
            &Request::Node {
                name: "odin-1",
                hosts: &hosts,
                days: 1,
            },
            false,
        )
        .unwrap();
        make(
            d,
            &Request::Client {
                name: "grafana",
                days: 1,
            },
            false,
        )
        .unwrap();
        for key in ["ca.key", "odin-1.key", "grafana.key"] {
            let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        assert!(
            make(
                d,
                &Request::Client {
                    name: "grafana",
                    days: 1
                },
                false
            )
            .unwrap_err()
            .contains("exists")
        );
        make(
            d,
            &Request::Client {
                name: "grafana",
                days: 1,
            },
            true,
        )
        .unwrap();
        assert!(
            make(
                d,
                &Request::Node {
                    name: "x",
                    hosts: &[],
                    days: 1
                },
                false
            )
            .is_err()
        );
        assert!(
            make(
                d,
                &Request::Client {
                    name: "../x",
                    days: 1
                },
                false
            )
            .is_err()
        );
        let tls = crate::security::web_config::TlsServerConfig {
            cert_file: d.join("odin-1.crt"),
            key_file: d.join("odin-1.key"),
            client_auth_type: crate::security::web_config::ClientAuth::RequireAndVerifyClientCert,
            client_ca_file: Some(d.join("ca.crt")),
            min_version: None,
            max_version: None,
            cipher_suites: Vec::new(),
            curve_preferences: Vec::new(),
            prefer_server_cipher_suites: None,
        };
        crate::security::tls::server_config(&tls, true).unwrap();
        // The node's certificate as the CA signed it: its names, both usages.
        let text = std::fs::read_to_string(d.join("odin-1.crt")).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
