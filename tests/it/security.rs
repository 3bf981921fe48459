//! Issue 16: TLS and authentication on the HTTP port, with real clients (curl and
//! `openssl s_client` for TLS) against the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use odin::security::Role;
use odin::security::auth::ROUTE_ROLES;

use crate::common::{Odin, agent, poll_until};

/// A web config with these users: `admin` (every role), `reader` (read), `writer`
/// (write) and `nobody` (no role), all with the password `pw` (bcrypt, cost 4).
fn users_config() -> String {
    let hash = bcrypt::hash("pw", 4).unwrap();
    format!(
        "basic_auth_users:\n  admin: '{hash}'\n  reader: '{hash}'\n  writer: '{hash}'\n  nobody: '{hash}'\n\
         odin:\n  users:\n    reader: {{ roles: [read] }}\n    writer: {{ roles: [write] }}\n    nobody: {{ roles: [] }}\n"
    )
}

fn basic(user: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
    format!("Basic {token}")
}

/// One request: (status, `WWW-Authenticate` present, body).
fn call(odin: &Odin, post: bool, path: &str, authorization: Option<&str>) -> (u16, bool, String) {
    let agent = agent();
    let url = odin.url(path);
    let mut response = if post {
        let mut req = agent.post(&url);
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        req.send(&[][..])
    } else {
        let mut req = agent.get(&url);
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        req.call()
    }
    .expect("request");
    let challenged = response.headers().contains_key("www-authenticate");
    let status = response.status().as_u16();
    (
        status,
        challenged,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Every route of the HTTP API, from the table the server checks: no credentials
/// or a wrong password → 401 with a challenge; a user without the route's role →
/// 403; a user with it → served (whatever the handler then says about the request).
#[test]
fn every_route_answers_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, users_config()).unwrap();
    let data = dir.path().join("data");
    let odin = Odin::start(
        &data,
        &[
            &format!("--web.config.file={}", web.display()),
            "--web.enable-admin-api",
        ],
    );
    // Wrong passwords on the first routes only: more from one address would be cut
    // off (see the audit test).
    let mut wrong_passwords_left = odin::security::auth::MAX_FAILURES - 1;
    for &(route, role) in ROUTE_ROLES {
        let path = route.replace("{name}", "__name__");
        let post = matches!(role, Some(Role::Write | Role::Admin)) || path == "/api/v1/read";
        let Some(role) = role else {
            for who in [None, Some(basic("nobody")).as_deref()] {
                let (status, _, body) = call(&odin, post, &path, who);
                assert_eq!(status, 200, "{route} is open: {body}");
            }
            continue;
        };
        let (status, challenged, body) = call(&odin, post, &path, None);
        assert_eq!(
            (status, challenged),
            (401, true),
            "{route} without credentials"
        );
        assert_eq!(body, "Unauthorized\n", "{route}: nothing else in a refusal");
        if wrong_passwords_left > 0 {
            wrong_passwords_left -= 1;
            let wrong = format!("Basic {}", "YWRtaW46bm90LXB3"); // admin:not-pw
            assert_eq!(
                call(&odin, post, &path, Some(&wrong)).0,
                401,
                "{route} wrong password"
            );
        }
        let (status, _, body) = call(&odin, post, &path, Some(&basic("nobody")));
        assert_eq!(
            (status, body.as_str()),
            (403, "Forbidden\n"),
            "{route} by nobody"
        );
        let lacking = if role == Role::Read {
            "writer"
        } else {
            "reader"
        };
        assert_eq!(
            call(&odin, post, &path, Some(&basic(lacking))).0,
            403,
            "{route} by {lacking}"
        );
        let holder = match role {
            Role::Read => "reader",
            Role::Write => "writer",
            Role::Admin => "admin",
        };
        let (status, _, body) = call(&odin, post, &path, Some(&basic(holder)));
        assert!(
            ![401, 500].contains(&status) && body != "Forbidden\n",
            "{route} by {holder}: {status} {body}"
        );
        if role == Role::Read && !post && path.starts_with("/api/v1/") && !path.contains("cluster")
        {
            // A read route with no required parameters answers 200; the others
            // name what is missing.
            assert!(
                status == 200 || (status == 400 && body.contains("error")),
                "{route} by {holder}: {status} {body}"
            );
        }
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate from it, and
/// a client certificate from another CA, made with the openssl command line.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
}

impl Pki {
    pub(crate) fn new(dir: &Path) -> Pki {
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        pki.ca("ca");
        pki.ca("other-ca");
        pki.leaf("server", "ca", "odin-server", "serverAuth");
        pki.leaf("client", "ca", "grafana", "clientAuth");
        pki.leaf("foreign", "other-ca", "intruder", "clientAuth");
        pki
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    /// A certificate `name` signed by `ca` with these extended key usages
    /// (`serverAuth` ones name 127.0.0.1).
    pub(crate) fn leaf(&self, name: &str, ca: &str, cn: &str, usages: &str) {
        let san = usages.contains("serverAuth").then_some("IP:127.0.0.1");
        self.leaf_with_san(name, ca, cn, usages, san);
    }

    /// [`Pki::leaf`] with these subject alternative names (openssl's syntax).
    pub(crate) fn leaf_with_san(
        &self,
        name: &str,
        ca: &str,
        cn: &str,
        usages: &str,
        san: Option<&str>,
    ) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ]);
        let san = san.map_or(String::new(), |s| format!("subjectAltName={s}\n"));
        let ext = format!("{san}extendedKeyUsage={usages}\nkeyUsage=digitalSignature\n");
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
}

/// curl to `path` over TLS, trusting the test CA; returns the status, or `Err` with
/// curl's complaint when the request did not complete.
fn curl(
    odin: &Odin,
    pki: &Pki,
    path: &str,
    client: Option<&str>,
    user: Option<&str>,
) -> Result<u16, String> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ])
    .args(["--cacert", &pki.path("ca.crt")]);
    if let Some(c) = client {
        cmd.args([
            "--cert",
            &pki.path(&format!("{c}.crt")),
            "--key",
            &pki.path(&format!("{c}.key")),
        ]);
    }
    if let Some(u) = user {
        cmd.args(["-u", &format!("{u}:pw")]);
    }
    let out = cmd
        .arg(format!("https://{}{path}", odin.addr))
        .output()
        .expect("run curl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    String::from_utf8_lossy(&out.stdout)
        .parse()
        .map_err(|e| format!("curl printed no status: {e}"))
}

/// What `openssl s_client` reports for a handshake with these extra arguments.
fn s_client(odin: &Odin, pki: &Pki, extra: &[&str]) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &odin.addr.to_string(),
            "-CAfile",
            &pki.path("ca.crt"),
        ])
        .args([
            "-cert",
            &pki.path("client.crt"),
            "-key",
            &pki.path("client.key"),
        ])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn tls_with_client_certificates_users_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
             http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n{}",
            users_config()
        ),
    )
    .unwrap();
    let odin = start_tls(dir.path(), &web, &pki, Some("client"));

    // Users on top of the client certificate.
    assert_eq!(
        curl(
            &odin,
            &pki,
            "/api/v1/query?query=1",
            Some("client"),
            Some("reader")
        ),
        Ok(200)
    );
    assert_eq!(
        curl(&odin, &pki, "/api/v1/query?query=1", Some("client"), None),
        Ok(401)
    );
    assert_eq!(
        curl(
            &odin,
            &pki,
            "/api/v1/query?query=1",
            Some("client"),
            Some("writer")
        ),
        Ok(403)
    );
    // No client certificate, or one from another CA: no connection at all.
    assert!(
        curl(&odin, &pki, "/-/ready", None, None).is_err(),
        "served without a client certificate"
    );
    assert!(
        curl(&odin, &pki, "/-/ready", Some("foreign"), None).is_err(),
        "served a certificate from another CA"
    );
    // Nothing in plaintext.
    let plain = agent().get(&odin.url("/-/ready")).call();
    assert!(
        !matches!(plain, Ok(ref r) if r.status() == 200),
        "served over plain HTTP"
    );
    // Headers from the web config.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            &pki.path("ca.crt"),
        ])
        .args([
            "--cert",
            &pki.path("client.crt"),
            "--key",
            &pki.path("client.key"),
        ])
        .arg(format!("https://{}/-/healthy", odin.addr))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        headers.contains("strict-transport-security: max-age=31536000"),
        "{headers}"
    );

    // TLS 1.2 and 1.3 only.
    let old = s_client(&odin, &pki, &["-tls1_1"]);
    assert!(
        !old.contains("Cipher is ECDHE") && !old.contains("New, TLSv1.1"),
        "TLS 1.1 accepted:\n{old}"
    );
    let v12 = s_client(&odin, &pki, &["-tls1_2"]);
    assert!(v12.contains("New, TLSv1.2"), "TLS 1.2 refused:\n{v12}");
    let v13 = s_client(&odin, &pki, &["-tls1_3"]);
    assert!(v13.contains("New, TLSv1.3"), "TLS 1.3 refused:\n{v13}");
    assert!(
        v13.contains("CN=odin-server") || v13.contains("CN = odin-server"),
        "{v13}"
    );

    // Rotation: a new certificate on disk serves the next connections, no restart.
    pki.leaf("server", "ca", "odin-rotated", "serverAuth");
    assert!(
        poll_until(Duration::from_secs(10), || {
            let now = s_client(&odin, &pki, &[]);
            now.contains("CN=odin-rotated") || now.contains("CN = odin-rotated")
        }),
        "the rotated certificate is not served"
    );
    assert_eq!(
        curl(
            &odin,
            &pki,
            "/api/v1/query?query=1",
            Some("client"),
            Some("reader")
        ),
        Ok(200)
    );
}

/// Hex SHA-256 of a bearer token, as `odin.tokens` stores it.
fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts ODIN over TLS with the web config `web` (in `dir`, beside `pki`'s
/// files), ready once curl gets `/-/ready` with `client`'s certificate (or none).
fn start_tls(dir: &Path, web: &Path, pki: &Pki, client: Option<&str>) -> Odin {
    let probe = |odin: &Odin| match curl(odin, pki, "/-/ready", client, None) {
        Ok(200) => Ok(()),
        Ok(s) => Err(format!("status {s}")),
        Err(e) => Err(e),
    };
    Odin::start_args_probing(
        &dir.join("odin"),
        &[
            format!("--web.config.file={}", web.display()),
            format!("--config.file={}", write_bare(dir).display()),
        ],
        &probe,
    )
}

fn write_bare(dir: &Path) -> PathBuf {
    let bare = dir.join("bare.yml");
    std::fs::write(&bare, "global: {}\n").unwrap();
    bare
}

#[test]
fn a_bad_web_config_stops_the_start_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    for (text, named) in [
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "missing.crt",
        ),
        ("basic_auth_users:\n  alice: plaintext\n", "bcrypt"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n",
            "TLS11",
        ),
    ] {
        std::fs::write(&web, text).unwrap();
        let out = Command::new(crate::common::BIN)
            .arg("run")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--grpc-address=")
            .arg(format!("--web.config.file={}", web.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(named),
            "{text:?}: {err}"
        );
    }
}

/// Prometheus 2.42 as a real client of a secured ODIN: it scrapes ODIN's `/metrics`
/// over TLS with a bearer token (`read`), and remote-writes what it scraped to ODIN
/// over TLS with basic auth (`write`). ODIN then holds `up{job="odin"} == 1`.
#[test]
fn prometheus_scrapes_and_remote_writes_over_tls_with_credentials() {
    assert!(
        crate::common::have_prometheus(),
        "prometheus (Debian's 2.42) is needed: scripts/test.sh installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let token = "scraper-token-0123456789";
    let token_hash = token_sha256(token);
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}  \
             tokens:\n  - {{ name: prometheus, sha256: {token_hash}, roles: [read] }}\n",
            users_config()
        ),
    )
    .unwrap();
    let odin = start_tls(dir.path(), &web, &pki, None);
    let cfg = dir.path().join("prometheus.yml");
    let ca = pki.path("ca.crt");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n- job_name: odin\n  scheme: https\n  tls_config: {{ ca_file: {ca} }}\n  \
             authorization: {{ credentials: {token} }}\n  static_configs: [{{ targets: ['{addr}'] }}]\n\
             remote_write:\n- url: https://{addr}/api/v1/write\n  tls_config: {{ ca_file: {ca} }}\n  \
             basic_auth: {{ username: writer, password: pw }}\n  \
             queue_config: {{ batch_send_deadline: 1s }}\n",
            addr = odin.addr
        ),
    )
    .unwrap();
    let port = crate::common::free_port();
    let _prom = crate::common::Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // What ODIN holds, read over TLS as the read-only user.
    let up = || -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert", &ca, "-u", "reader:pw"])
            .arg(format!(
                "https://{}/api/v1/query?query=up%7Bjob%3D%22odin%22%7D",
                odin.addr
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(
        poll_until(Duration::from_secs(60), || up().contains(r#""value":["#)
            && up().contains(r#""1"]"#)),
        "up{{job=\"odin\"}} never reached ODIN: {}",
        up()
    );
}

/// `--web.enable-remote-write-receiver=false`: an appliance that only scrapes takes
/// no samples from outside (Prometheus's 404 and message); the bare flag, as
/// Prometheus users write it, keeps the receiver on.
#[test]
fn the_remote_write_receiver_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let sample = || {
        vec![crate::common::TestSeries::new(
            &[("__name__", "pushed")],
            vec![(crate::common::now_ms(), 1.0)],
        )]
    };
    let off = Odin::start(
        &dir.path().join("off"),
        &["--web.enable-remote-write-receiver=false"],
    );
    let (status, body) = off.write(&sample());
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("--web.enable-remote-write-receiver"),
        "{body}"
    );
    let on = Odin::start(
        &dir.path().join("on"),
        &["--web.enable-remote-write-receiver"],
    );
    let (status, body) = on.write(&sample());
    assert_eq!(status, 204, "{body}");
}

/// The StoreAPI port takes the web config's TLS and credentials: a client
/// certificate the CA issued, or a bearer token / basic auth with the `read` role in
/// the metadata; nothing in plaintext, nothing with a certificate from another CA.
#[test]
fn the_storeapi_takes_tls_and_credentials() {
    use odin::storeapi::proto::thanos::info::{InfoRequest, info_client::InfoClient};
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let web = dir.path().join("web.yml");
    let token_hash = token_sha256("grpc-token-0123456789");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n{}  \
             tokens:\n  - {{ name: thanos, sha256: {token_hash}, roles: [read] }}\n",
            users_config()
        ),
    )
    .unwrap();
    let odin = start_tls(dir.path(), &web, &pki, None);
    let grpc = odin.grpc_addr.expect("grpc address");
    let read = |name: &str| std::fs::read(pki.dir.join(name)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tls = |client: Option<&str>| {
            let mut t = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("ca.crt")))
                .domain_name("127.0.0.1");
            if let Some(c) = client {
                t = t.identity(Identity::from_pem(
                    read(&format!("{c}.crt")),
                    read(&format!("{c}.key")),
                ));
            }
            t
        };
        let channel = |client: Option<&str>| {
            let tls = tls(client);
            async move {
                Channel::from_shared(format!("https://{grpc}"))
                    .unwrap()
                    .tls_config(tls)
                    .unwrap()
                    .connect()
                    .await
            }
        };
        let info = |channel: Channel, authorization: Option<String>| async move {
            let mut req = tonic::Request::new(InfoRequest {});
            if let Some(a) = authorization {
                req.metadata_mut()
                    .insert("authorization", a.parse().unwrap());
            }
            InfoClient::new(channel)
                .info(req)
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        };
        // A client certificate from the CA is enough.
        let with_cert = channel(Some("client")).await.unwrap();
        assert_eq!(info(with_cert, None).await, Ok(()));
        // Without one: credentials in the metadata, with the read role.
        let bare = channel(None).await.unwrap();
        assert_eq!(
            info(bare.clone(), None).await,
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            info(bare.clone(), Some("Bearer grpc-token-0123456789".into())).await,
            Ok(())
        );
        assert_eq!(
            info(bare.clone(), Some("Bearer wrong".into())).await,
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(info(bare.clone(), Some(basic("reader"))).await, Ok(()));
        assert_eq!(
            info(bare, Some(basic("writer"))).await,
            Err(tonic::Code::PermissionDenied)
        );
        // A certificate from another CA, or plaintext: no call gets through.
        let foreign = match channel(Some("foreign")).await {
            Ok(ch) => info(ch, Some(basic("reader"))).await,
            Err(_) => Err(tonic::Code::Unavailable),
        };
        assert!(
            foreign.is_err(),
            "a certificate from another CA was accepted"
        );
        let plain = match Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(ch) => info(ch, Some(basic("reader"))).await,
            Err(_) => Err(tonic::Code::Unavailable),
        };
        assert!(plain.is_err(), "served in plaintext");
    });
}

/// The audit log (`--audit.log-file`, JSON lines): denials, admin actions and
/// reloads, with who, what and from where; and a client address that keeps failing
/// is cut off (429) before its credentials are even looked at.
#[test]
fn denials_admin_actions_and_reloads_are_audited_and_guessing_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, users_config()).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let odin = Odin::start(
        &dir.path().join("data"),
        &[
            &format!("--web.config.file={}", web.display()),
            &format!("--audit.log-file={}", audit.display()),
            "--web.enable-admin-api",
            "--web.enable-lifecycle",
        ],
    );
    let admin = basic("admin");
    let (status, _, body) = call(
        &odin,
        true,
        "/api/v1/admin/tsdb/clean_tombstones",
        Some(&admin),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(call(&odin, true, "/-/reload", Some(&admin)).0, 200);
    assert_eq!(
        call(&odin, false, "/api/v1/labels", Some(&basic("writer"))).0,
        403
    );
    let wrong = format!("Basic {}", "YWRtaW46bm90LXB3"); // admin:not-pw
    for _ in 0..odin::security::auth::MAX_FAILURES {
        assert_eq!(call(&odin, false, "/api/v1/labels", Some(&wrong)).0, 401);
    }
    let (status, _, body) = call(&odin, false, "/api/v1/labels", Some(&basic("reader")));
    assert_eq!(status, 429, "{body}");

    let events = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let fields = |e: &serde_json::Value, k: &str| e["fields"][k].as_str().unwrap_or("").to_string();
    assert!(poll_until(Duration::from_secs(5), || events().len() >= 14));
    let all = events();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        all.iter()
            .filter(|e| e["fields"]["event"] == kind)
            .collect()
    };
    let admin_actions = of("admin");
    assert_eq!(admin_actions.len(), 2, "{all:?}");
    assert_eq!(fields(admin_actions[0], "user"), "admin");
    assert_eq!(
        fields(admin_actions[0], "what"),
        "POST /api/v1/admin/tsdb/clean_tombstones"
    );
    assert!(fields(admin_actions[0], "client").starts_with("127.0.0.1:"));
    assert!(admin_actions[0]["timestamp"].is_string());
    let reloads = of("reload");
    assert_eq!(reloads.len(), 1, "{all:?}");
    assert_eq!(fields(reloads[0], "by"), "POST /-/reload");
    let denied = of("denied");
    assert_eq!(
        denied.len(),
        1 + odin::security::auth::MAX_FAILURES as usize + 1,
        "{all:?}"
    );
    assert_eq!(fields(denied[0], "user"), "writer");
    assert_eq!(fields(denied[0], "reason"), "Forbidden");
    assert_eq!(fields(denied[1], "reason"), "Unauthenticated");
    assert_eq!(fields(denied.last().unwrap(), "reason"), "TooManyFailures");
    // Never a password or a token in the audit log.
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !text.contains("not-pw") && !text.contains("YWRtaW46"),
        "{text}"
    );
}

/// Users and tokens follow the web config on SIGHUP and `/-/reload`; a web config
/// that does not load is refused and the running users stay.
#[test]
fn users_follow_the_web_config_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, users_config()).unwrap();
    let odin = Odin::start(
        &dir.path().join("data"),
        &[
            &format!("--web.config.file={}", web.display()),
            "--web.enable-lifecycle",
        ],
    );
    let carol = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("carol:pw")
        )
    };
    assert_eq!(call(&odin, false, "/api/v1/labels", Some(&carol)).0, 401);
    // Carol added, by SIGHUP.
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  admin: '{hash}'\n  carol: '{hash}'\n\
             odin:\n  users:\n    carol: {{ roles: [read] }}\n"
        ),
    )
    .unwrap();
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(odin.pid(), libc::SIGHUP) };
    assert!(
        poll_until(Duration::from_secs(10), || call(
            &odin,
            false,
            "/api/v1/labels",
            Some(&carol)
        )
        .0 == 200),
        "carol not admitted after SIGHUP"
    );
    // Roles follow too: carol reads, and may not write.
    assert_eq!(call(&odin, true, "/api/v1/write", Some(&carol)).0, 403);
    // A broken web config: refused, carol and admin stay.
    std::fs::write(&web, "basic_auth_users:\n  carol: plaintext\n").unwrap();
    let (status, _, body) = call(&odin, true, "/-/reload", Some(&basic("admin")));
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("bcrypt"), "{body}");
    assert_eq!(call(&odin, false, "/api/v1/labels", Some(&carol)).0, 200);
}

/// A JWKS endpoint, as an identity provider publishes one: serves whatever `keys`
/// holds, and counts the fetches.
struct JwksServer {
    url: String,
    keys: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    fn start(keys: String) -> JwksServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let keys = std::sync::Arc::new(std::sync::Mutex::new(keys));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        JwksServer { url, keys, fetches }
    }
}

/// A signing key of the test's identity provider.
struct IdpKey {
    key: jsonwebtoken::EncodingKey,
    kid: String,
}

impl IdpKey {
    fn new(kid: &str) -> IdpKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        IdpKey {
            key: jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            kid: kid.into(),
        }
    }

    fn jwks(keys: &[&IdpKey]) -> String {
        let keys: Vec<_> = keys
            .iter()
            .map(|k| {
                let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
                    &k.key,
                    jsonwebtoken::Algorithm::ES256,
                )
                .unwrap();
                jwk.common.key_id = Some(k.kid.clone());
                jwk
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    /// `Bearer <JWT>` for a user in `groups`, expiring `exp_in` seconds from now.
    fn bearer(&self, aud: &str, groups: &[&str], exp_in: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = serde_json::json!({
            "iss": "https://idp.test", "aud": aud, "sub": "u-7",
            "preferred_username": "grace", "groups": groups, "exp": now + exp_in,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
        )
    }
}

/// OpenID Connect: tokens an identity provider signed are accepted with the roles
/// their `groups` claim maps to; a wrong audience, an expired token or an unknown
/// signer is a 401; a key the provider rotated in is fetched when a token names it.
#[test]
fn identity_provider_tokens_authenticate_with_mapped_roles() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (IdpKey::new("k1"), IdpKey::new("k2"));
    let idp = JwksServer::start(IdpKey::jwks(&[&k1]));
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "odin:\n  oidc:\n    issuer: https://idp.test\n    audience: odin\n    \
             jwks_url: {}\n    roles_claim: groups\n    role_mapping:\n      \
             ops: [read, write, admin]\n      viewers: [read]\n",
            idp.url
        ),
    )
    .unwrap();
    let odin = Odin::start(
        &dir.path().join("data"),
        &[&format!("--web.config.file={}", web.display())],
    );
    let viewer = k1.bearer("odin", &["viewers"], 300);
    // The keys are fetched in the background after the start.
    assert!(
        poll_until(Duration::from_secs(10), || call(
            &odin,
            false,
            "/api/v1/labels",
            Some(&viewer)
        )
        .0 == 200),
        "a valid token was not accepted"
    );
    assert_eq!(call(&odin, true, "/api/v1/write", Some(&viewer)).0, 403);
    let ops = k1.bearer("odin", &["ops"], 300);
    // Past the role check: the handler refuses the empty body.
    assert_eq!(call(&odin, true, "/api/v1/write", Some(&ops)).0, 400);
    for refused in [
        k1.bearer("grafana", &["ops"], 300),
        k1.bearer("odin", &["ops"], -600),
        IdpKey::new("k1").bearer("odin", &["ops"], 300),
        "Bearer not.a.jwt".to_string(),
    ] {
        let (status, challenged, body) = call(&odin, false, "/api/v1/labels", Some(&refused));
        assert_eq!((status, challenged), (401, true), "{refused}: {body}");
        assert!(!body.contains("series"), "{body}");
    }
    // No group that maps to a role: authenticated, allowed nothing.
    assert_eq!(
        call(
            &odin,
            false,
            "/api/v1/labels",
            Some(&k1.bearer("odin", &["interns"], 300))
        )
        .0,
        403
    );
    // The provider rotates to k2: a token signed with it makes ODIN fetch the keys
    // again (at most every 10 s), after which it is accepted and k1's are not.
    *idp.keys.lock().unwrap() = IdpKey::jwks(&[&k2]);
    let fetched = idp.fetches.load(std::sync::atomic::Ordering::SeqCst);
    let rotated = k2.bearer("odin", &["viewers"], 300);
    assert!(
        poll_until(Duration::from_secs(20), || call(
            &odin,
            false,
            "/api/v1/labels",
            Some(&rotated)
        )
        .0 == 200),
        "the rotated key was not fetched"
    );
    assert!(idp.fetches.load(std::sync::atomic::Ordering::SeqCst) > fetched);
    assert_eq!(call(&odin, false, "/api/v1/labels", Some(&viewer)).0, 401);
}

/// ODIN scraping a target over TLS as Prometheus's `tls_config` says: the target's
/// CA, a client certificate where the target asks for one, and `server_name` when
/// the certificate names a service rather than the address scraped.
#[test]
fn scrapes_verify_targets_by_ca_and_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // A certificate for a service name only: 127.0.0.1 is not in it.
    pki.leaf_with_san(
        "named",
        "ca",
        "metrics",
        "serverAuth",
        Some("DNS:metrics.internal"),
    );
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: named.crt\n  key_file: named.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    .unwrap();
    let target = Odin::start_args_probing(
        &dir.path().join("target"),
        &[
            format!("--web.config.file={}", web.display()),
            format!("--config.file={}", write_bare(dir.path()).display()),
        ],
        &|_: &Odin| Ok(()),
    );
    let addr = target.addr;
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let job = |name: &str, tls: &str| {
        format!(
            "- job_name: {name}\n  scheme: https\n  scrape_interval: 1s\n  tls_config: {{ {tls} }}\n  \
             static_configs: [{{ targets: ['{addr}'] }}]\n"
        )
    };
    let config = dir.path().join("scraper.yml");
    std::fs::write(
        &config,
        format!(
            "scrape_configs:\n{}{}{}{}",
            job(
                "named",
                &format!("ca_file: {ca}, cert_file: {cert}, key_file: {key}, server_name: metrics.internal")
            ),
            job(
                "by_address",
                &format!("ca_file: {ca}, cert_file: {cert}, key_file: {key}")
            ),
            job(
                "wrong_name",
                &format!("ca_file: {ca}, cert_file: {cert}, key_file: {key}, server_name: other.internal")
            ),
            job("no_client_cert", &format!("ca_file: {ca}, server_name: metrics.internal")),
        ) + &job(
            "insecure",
            &format!("insecure_skip_verify: true, cert_file: {cert}, key_file: {key}"),
        ),
    )
    .unwrap();
    let scraper = Odin::start(
        &dir.path().join("scraper"),
        &[&format!("--config.file={}", config.display())],
    );
    let health = |job: &str| -> Option<(String, String)> {
        let (_, body) = scraper.get("/api/v1/targets");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .find(|t| t["labels"]["job"] == job)
            .map(|t| {
                (
                    t["health"].as_str().unwrap_or("").to_string(),
                    t["lastError"].as_str().unwrap_or("").to_string(),
                )
            })
    };
    let settled = poll_until(Duration::from_secs(15), || {
        [
            "named",
            "by_address",
            "wrong_name",
            "no_client_cert",
            "insecure",
        ]
        .iter()
        .all(|j| health(j).is_some_and(|(h, _)| h != "unknown"))
    });
    assert!(settled, "targets never scraped");
    assert_eq!(health("named").unwrap().0, "up", "{:?}", health("named"));
    // insecure_skip_verify takes the certificate unverified (neither CA nor name).
    assert_eq!(
        health("insecure").unwrap().0,
        "up",
        "{:?}",
        health("insecure")
    );
    for refused in ["by_address", "wrong_name", "no_client_cert"] {
        let (h, err) = health(refused).unwrap();
        assert_eq!(h, "down", "{refused}: {err}");
        assert!(!err.is_empty(), "{refused}: no error shown");
    }
    // What the scrape fetched is stored.
    assert!(poll_until(Duration::from_secs(10), || {
        scraper
            .get("/api/v1/query?query=up%7Bjob%3D%22named%22%7D")
            .1
            .contains("\"1\"]")
    }));
}

/// A keep-alive HTTPS connection that trusts the test CA, with rustls, for tests
/// that must hold one connection open across a certificate rotation.
struct KeepAlive {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl KeepAlive {
    fn open(odin: &Odin, pki: &Pki) -> KeepAlive {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            rustls::pki_types::CertificateDer::pem_file_iter(pki.dir.join("ca.crt")).unwrap()
        {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let tcp = std::net::TcpStream::connect(odin.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        KeepAlive {
            stream: rustls::StreamOwned::new(conn, tcp),
        }
    }

    /// `GET path` on this connection: the status, or why it failed.
    fn get(&mut self, path: &str) -> Result<u16, String> {
        use std::io::{BufRead, Read, Write};
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut reader = std::io::BufReader::new(&mut self.stream);
        let mut status_line = String::new();
        reader
            .read_line(&mut status_line)
            .map_err(|e| e.to_string())?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad length {line:?}"))?;
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok(status)
    }

    /// The common name of the certificate the server presented (after a request:
    /// the handshake happens on first use).
    fn server_cn(&self) -> String {
        let certs = self.stream.conn.peer_certificates().unwrap_or_default();
        let der = certs
            .first()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        // The test CA's names are plain ASCII: find them in the DER.
        ["odin-server", "odin-rotated"]
            .iter()
            .find(|n| der.windows(n.len()).any(|w| w == n.as_bytes()))
            .map_or_else(String::new, |n| n.to_string())
    }
}

/// Certificate rotation under load: while clients keep making requests, on new
/// connections and on one kept open, the certificate is replaced on disk. New
/// connections get the new certificate, the open one goes on with its session, and
/// no request fails.
#[test]
fn certificate_rotation_under_load_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let odin = start_tls(dir.path(), &web, &pki, None);
    let mut kept = KeepAlive::open(&odin, &pki);
    assert_eq!(kept.get("/-/healthy"), Ok(200));
    assert_eq!(kept.server_cn(), "odin-server");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done, failures) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let (mut done, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut c = KeepAlive::open(&odin, &pki);
                for _ in 0..5 {
                    match c.get("/-/healthy") {
                        Ok(200) => done += 1,
                        other => failures.push(format!("{other:?}")),
                    }
                }
            }
            (done, failures)
        });
        std::thread::sleep(Duration::from_millis(300));
        pki.leaf("server", "ca", "odin-rotated", "serverAuth");
        let rotated = poll_until(Duration::from_secs(10), || {
            let mut fresh = KeepAlive::open(&odin, &pki);
            fresh.get("/-/healthy") == Ok(200) && fresh.server_cn() == "odin-rotated"
        });
        // The connection opened before the rotation goes on.
        for _ in 0..20 {
            assert_eq!(kept.get("/-/healthy"), Ok(200));
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(rotated, "new connections never got the rotated certificate");
        load.join().unwrap()
    });
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(done > 20, "only {done} requests under load");
    assert_eq!(
        kept.server_cn(),
        "odin-server",
        "the open connection keeps its session"
    );
}
