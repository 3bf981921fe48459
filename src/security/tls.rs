//! rustls server configurations from a web config's `tls_server_config`, and their
//! rotation: the files are checked every [`RELOAD_CHECK_INTERVAL`] (and on
//! [`ServerTls::reload`]), a changed certificate, key or CA is loaded for the
//! connections that start from then on, and open connections keep theirs. A set of
//! files that does not load (a key that does not match its certificate, a file
//! half-written) is logged and the previous configuration stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedCipherSuite};
use tokio_util::sync::CancellationToken;

use super::web_config::{ClientAuth, ClusterTlsSection, TlsServerConfig, TlsVersion};

/// How often the certificate files are checked for a change.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `reload` (a blocking file check) every [`RELOAD_CHECK_INTERVAL`] until `stop`.
fn spawn_reload_checks(
    reload: impl Fn() -> bool + Clone + Send + 'static,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_CHECK_INTERVAL) => {}
            }
            let _ = tokio::task::spawn_blocking(reload.clone()).await;
        }
    });
}

/// What tells that a file changed: its modification time, size and inode (a file
/// renamed into place with an old timestamp, or rewritten within the file system's
/// timestamp granularity, still counts); `None` when it cannot be read.
type FileStamp = Option<(SystemTime, u64, u64)>;

fn file_stamps(files: &[PathBuf]) -> Vec<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        })
        .collect()
}

/// Go's names of the TLS 1.2 suites rustls offers, and rustls's.
const TLS12_SUITES: [(&str, &str); 6] = [
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// Go's curve names and the key exchange groups they are in rustls.
const GROUPS: [(&str, rustls::NamedGroup); 4] = [
    ("X25519", rustls::NamedGroup::X25519),
    ("CurveP256", rustls::NamedGroup::secp256r1),
    ("CurveP384", rustls::NamedGroup::secp384r1),
    ("X25519MLKEM768", rustls::NamedGroup::X25519MLKEM768),
];

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// The suites for `names` (Go's, or rustls's): every TLS 1.3 suite, and the named
/// TLS 1.2 ones (all of them when none are named), in the order given.
pub fn cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, String> {
    let all = provider().cipher_suites;
    let mut chosen: Vec<SupportedCipherSuite> = all
        .iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
        .copied()
        .collect();
    if names.is_empty() {
        chosen = all;
        return Ok(chosen);
    }
    for name in names {
        let rustls_name = TLS12_SUITES
            .iter()
            .find(|(go, ours)| go == name || ours == name)
            .map(|(_, ours)| *ours)
            .ok_or_else(|| {
                format!(
                    "cipher_suites: {name} is not offered (offered: {})",
                    TLS12_SUITES.map(|(go, _)| go).join(", ")
                )
            })?;
        if let Some(s) = all.iter().find(|s| s.suite().as_str() == Some(rustls_name)) {
            chosen.push(*s);
        }
    }
    Ok(chosen)
}

/// The key exchange groups for Go's curve names (all of rustls's when none named).
pub fn key_exchange_groups(
    names: &[String],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, String> {
    let all = provider().kx_groups;
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            let group = GROUPS
                .iter()
                .find(|(go, _)| go == name)
                .map(|(_, g)| *g)
                .ok_or_else(|| {
                    format!(
                        "curve_preferences: {name} is not offered (offered: {})",
                        GROUPS.map(|(go, _)| go).join(", ")
                    )
                })?;
            all.iter()
                .find(|g| g.name() == group)
                .copied()
                .ok_or_else(|| format!("curve_preferences: {name} is not offered"))
        })
        .collect()
}

/// Builds the server configuration the files name now.
pub fn server_config(tls: &TlsServerConfig, http2: bool) -> Result<ServerConfig, String> {
    let mut provider = provider();
    provider.cipher_suites = cipher_suites(&tls.cipher_suites)?;
    provider.kx_groups = key_exchange_groups(&tls.curve_preferences)?;
    let provider = Arc::new(provider);
    let min = tls.min_version.unwrap_or(TlsVersion::Tls12);
    let max = tls.max_version.unwrap_or(TlsVersion::Tls13);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, p)| p)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match (tls.client_auth_type, &tls.client_ca_file) {
        (ClientAuth::NoClientCert, _) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = match mode {
                ClientAuth::VerifyClientCertIfGiven => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?,
            )
        }
        (mode, None) => return Err(format!("client_auth_type {mode:?} needs client_ca_file")),
    };
    let certs = read_certs(&tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| format!("key_file {}: {e}", tls.key_file.display()))?;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file {} and key_file: {e}", tls.cert_file.display()))?;
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(false);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_certs(&bytes, path)
}

/// The certificates in PEM `bytes` (read from `path`, which errors name); at least one.
fn parse_certs(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Something loaded from files and loaded again when they change: what it is
/// (`what`, for the log), as of its last good load. A load that fails (a
/// half-written file, a key that is not the certificate's) is logged and the
/// previous value stays; the files' stamps stay old too, so the next check tries
/// again.
pub struct FileBacked<T> {
    what: &'static str,
    files: Vec<PathBuf>,
    load: Box<dyn Fn(u64) -> Result<T, String> + Send + Sync>,
    /// The value, the files' stamps it was loaded at, its generation (from 1).
    current: RwLock<(Arc<T>, Vec<FileStamp>, u64)>,
    /// One reload at a time (the periodic check and a SIGHUP may meet), so that two
    /// loads never share a generation.
    reloading: parking_lot::Mutex<()>,
}

impl<T: Send + Sync + 'static> FileBacked<T> {
    /// Loads now; `load` gets the generation it loads.
    fn load_from(
        what: &'static str,
        files: Vec<PathBuf>,
        load: impl Fn(u64) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let stamps = file_stamps(&files);
        let value = load(1)?;
        Ok(FileBacked {
            what,
            files,
            load: Box::new(load),
            current: RwLock::new((Arc::new(value), stamps, 1)),
            reloading: parking_lot::Mutex::new(()),
        })
    }

    /// The value as last loaded (what new connections get).
    pub fn current(&self) -> Arc<T> {
        self.current.read().0.clone()
    }

    /// Loads again if a file changed since the last load; whether a new value is in
    /// use. A failure keeps the old one and is logged.
    pub fn reload(&self) -> bool {
        let _one_at_a_time = self.reloading.lock();
        let now = file_stamps(&self.files);
        let generation = {
            let current = self.current.read();
            if current.1 == now {
                return false;
            }
            current.2 + 1
        };
        match (self.load)(generation) {
            Ok(value) => {
                *self.current.write() = (Arc::new(value), now, generation);
                tracing::info!(what = self.what, files = ?self.files, "reloaded");
                true
            }
            Err(e) => {
                tracing::error!(what = self.what, error = %e, "reload failed; keeping the previous one");
                false
            }
        }
    }

    /// Checks the files every [`RELOAD_CHECK_INTERVAL`] until `stop`.
    pub fn spawn_reloader(self: &Arc<Self>, stop: CancellationToken) {
        let this = self.clone();
        spawn_reload_checks(move || this.reload(), stop);
    }
}

/// A listener's TLS configuration, current as of the last change of its files.
pub type ServerTls = FileBacked<ServerConfig>;

impl ServerTls {
    /// Loads the files now; an error names the file that did not load.
    pub fn new(settings: TlsServerConfig, http2: bool) -> Result<Arc<ServerTls>, String> {
        let mut files = vec![settings.cert_file.clone(), settings.key_file.clone()];
        files.extend(settings.client_ca_file.clone());
        let loaded = FileBacked::load_from("TLS certificate", files, move |_| {
            server_config(&settings, http2)
        })?;
        Ok(Arc::new(loaded))
    }
}

/// The cluster port's side of mutual TLS: the node's certificate, and every peer
/// must present one from the cluster's CA.
pub fn cluster_server(c: &ClusterTlsSection) -> Result<Arc<ServerTls>, String> {
    ServerTls::new(
        TlsServerConfig {
            cert_file: c.cert_file.clone(),
            key_file: c.key_file.clone(),
            client_auth_type: ClientAuth::RequireAndVerifyClientCert,
            client_ca_file: Some(c.ca_file.clone()),
            min_version: None,
            max_version: None,
            cipher_suites: Vec::new(),
            curve_preferences: Vec::new(),
            prefer_server_cipher_suites: None,
        },
        true,
    )
}

/// The calling side of the cluster's mutual TLS: the CA that issued the peers'
/// certificates, and this node's certificate and key as its client identity; re-read
/// when the files change, as the server side is ([`FileBacked::reload`]).
pub type PeerClientTls = FileBacked<PeerClientPem>;

/// One loaded set of the calling side's files. `generation` grows with every load,
/// so that a caller holding connections made with an older set knows to make new
/// ones.
#[derive(Clone)]
pub struct PeerClientPem {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub generation: u64,
}

impl PeerClientTls {
    /// Loads the files now; an error names the one that did not load.
    pub fn load(c: &ClusterTlsSection) -> Result<Arc<PeerClientTls>, String> {
        let files = vec![c.cert_file.clone(), c.key_file.clone(), c.ca_file.clone()];
        let section = c.clone();
        let loaded =
            FileBacked::load_from("cluster client certificate", files, move |generation| {
                read_client_pem(&section, generation)
            })?;
        Ok(Arc::new(loaded))
    }
}

/// Reads and checks the calling side's files: the CA parses, and the certificate
/// and key make a client identity (rustls refuses a key that is not the
/// certificate's).
fn read_client_pem(c: &ClusterTlsSection, generation: u64) -> Result<PeerClientPem, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let pem = PeerClientPem {
        ca_pem: read(&c.ca_file)?,
        cert_pem: read(&c.cert_file)?,
        key_pem: read(&c.key_file)?,
        generation,
    };
    // The bytes kept are the bytes checked (a second read could catch a file
    // being rewritten).
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(&pem.ca_pem, &c.ca_file)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", c.ca_file.display()))?;
    }
    let certs = parse_certs(&pem.cert_pem, &c.cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&pem.key_pem)
        .map_err(|e| format!("{}: {e}", c.key_file.display()))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {}: {e}",
                c.cert_file.display(),
                c.key_file.display()
            )
        })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's files from `odin certs`, in `dir` (`ca.crt`, `peer.crt`, `peer.key`).
    fn node_files(dir: &Path) -> ClusterTlsSection {
        use crate::security::certs::{Request, make};
        make(
            dir,
            &Request::Ca {
                name: "ca",
                days: 2,
            },
            true,
        )
        .unwrap();
        let hosts = ["127.0.0.1".to_string()];
        make(
            dir,
            &Request::Node {
                name: "peer",
                hosts: &hosts,
                days: 2,
            },
            true,
        )
        .unwrap();
        ClusterTlsSection {
            cert_file: dir.join("peer.crt"),
            key_file: dir.join("peer.key"),
            ca_file: dir.join("ca.crt"),
        }
    }

    #[test]
    fn the_cluster_client_identity_reloads_only_a_set_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let section = node_files(dir.path());
        let client = PeerClientTls::load(&section).unwrap();
        let first = client.current();
        assert_eq!(first.generation, 1);
        assert!(!client.reload(), "nothing changed");
        // A key that is not the certificate's (another node's): refused, the old
        // set stays.
        let other = tempfile::tempdir().unwrap();
        node_files(other.path());
        std::fs::copy(other.path().join("peer.key"), &section.key_file).unwrap();
        bump_mtime(&section.key_file);
        assert!(!client.reload());
        assert_eq!(client.current().generation, 1);
        assert_eq!(client.current().key_pem, first.key_pem);
        // A half-written certificate: refused too.
        std::fs::write(&section.cert_file, b"-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
        assert!(!client.reload());
        // The matching pair from the other node: taken, as a new generation.
        std::fs::copy(other.path().join("peer.crt"), &section.cert_file).unwrap();
        std::fs::copy(other.path().join("ca.crt"), &section.ca_file).unwrap();
        bump_mtime(&section.cert_file);
        assert!(client.reload());
        let now = client.current();
        assert_eq!(now.generation, 2);
        assert_ne!(now.cert_pem, first.cert_pem);
    }

    /// Moves a file's modification time forward (tests run faster than some file
    /// systems' timestamp granularity).
    fn bump_mtime(path: &Path) {
        let f = std::fs::File::options().append(true).open(path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
    }

    #[test]
    fn suites_and_groups_by_go_names() {
        let all = cipher_suites(&[]).unwrap();
        let one = cipher_suites(&["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".into()]).unwrap();
        let tls13 = one
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
            .count();
        assert_eq!(
            one.len(),
            tls13 + 1,
            "every TLS 1.3 suite and the named one"
        );
        assert!(all.len() > one.len());
        assert!(cipher_suites(&["TLS_RSA_WITH_AES_128_CBC_SHA".into()]).is_err());
        let groups = key_exchange_groups(&["CurveP384".into(), "X25519".into()]).unwrap();
        assert_eq!(groups[0].name(), rustls::NamedGroup::secp384r1);
        assert_eq!(groups[1].name(), rustls::NamedGroup::X25519);
        assert!(key_exchange_groups(&["CurveP521".into()]).is_err());
    }
}

/// What an outbound TLS client (a scrape, for now) is configured with, as
/// Prometheus's `tls_config` says it.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsSettings {
    /// Trust only these CAs (else the public web roots).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key, for servers that ask for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry, when it is not the URL's host
    /// (a target addressed by IP whose certificate names a service).
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    /// TLS 1.3 only, rather than 1.2 and 1.3 (rustls speaks nothing older).
    pub tls13_only: bool,
    pub http2: bool,
}

/// A rustls client configuration for `s`.
///
/// `server_name` changes the name the certificate is verified against; the SNI the
/// client sends stays the URL's host (none for an IP address), as the HTTP client
/// picks it from the URL.
pub fn client_config(s: &ClientTlsSettings) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if s.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    match &s.ca_file {
        Some(ca) => {
            for cert in read_certs(ca).map_err(|e| format!("ca_file {e}"))? {
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("ca_file: {e}"))?;
    let name = s
        .server_name
        .as_ref()
        .map(|n| {
            rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|e| format!("server_name {n:?}: {e}"))
        })
        .transpose()?;
    let verifier = Arc::new(NamedVerifier {
        webpki,
        name,
        any_certificate: s.insecure_skip_verify,
    });
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &s.identity {
        Some((cert, key)) => {
            let certs = read_certs(cert).map_err(|e| format!("cert_file {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("cert_file {} and key_file: {e}", cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if s.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The web PKI's verification, against `name` rather than the URL's host when set.
/// With `any_certificate` (`insecure_skip_verify`) any certificate is taken; the
/// handshake's signatures are still checked, so the connection is at least with the
/// certificate's key holder.
#[derive(Debug)]
struct NamedVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    name: Option<rustls::pki_types::ServerName<'static>>,
    any_certificate: bool,
}

impl rustls::client::danger::ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.any_certificate {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        let name = self.name.as_ref().unwrap_or(server_name);
        self.webpki
            .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
