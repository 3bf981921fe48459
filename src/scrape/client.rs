//! Fetching a scrape body: over HTTP(S) for targets of a job, or from an in-process
//! source (the built-in collectors, ODIN's own metrics) that produces the same bytes
//! an exporter would serve.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::exposition::format::{Format, SCRAPE_ACCEPT_HEADER};
use crate::scrape::config::{Authorization, BasicAuth, ScrapeConfig, TlsConfig, TlsVersion};

/// Something in the process that exposes metrics like an exporter does.
pub trait LocalSource: Send + Sync {
    /// The body and its format. Called on a blocking thread.
    fn scrape(&self) -> Result<(Vec<u8>, Format), String>;
}

/// Where a target's body comes from.
#[derive(Clone)]
pub enum Fetcher {
    Http(HttpFetcher),
    Local(Arc<dyn LocalSource>),
}

impl Fetcher {
    /// The target's page; `size_hint` is what the last one weighed (the buffer is
    /// sized for it, rather than grown and copied as the body arrives).
    pub async fn fetch(
        &self,
        timeout: Duration,
        size_hint: usize,
    ) -> Result<(Vec<u8>, Format), String> {
        match self {
            Fetcher::Http(h) => h.fetch(timeout, size_hint).await,
            Fetcher::Local(src) => {
                let src = src.clone();
                let work = tokio::task::spawn_blocking(move || src.scrape());
                match tokio::time::timeout(timeout, work).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(format!("collector failed: {e}")),
                    Err(_) => Err("context deadline exceeded".to_string()),
                }
            }
        }
    }
}

/// An HTTP client for one job (auth and TLS are per job) and a target's URL.
#[derive(Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    url: String,
    body_size_limit: u64,
}

impl HttpFetcher {
    pub fn new(client: reqwest::Client, url: String, body_size_limit: u64) -> Self {
        Self {
            client,
            url,
            body_size_limit,
        }
    }

    async fn fetch(
        &self,
        timeout: Duration,
        size_hint: usize,
    ) -> Result<(Vec<u8>, Format), String> {
        let request = self
            .client
            .get(&self.url)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", timeout.as_secs_f64()),
            )
            .timeout(timeout);
        let mut response = request.send().await.map_err(describe_reqwest)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("server returned HTTP status {status}"));
        }
        let format = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(Format::Text, Format::from_content_type);
        let limit = usize::try_from(self.body_size_limit).unwrap_or(usize::MAX);
        let mut body = Vec::with_capacity(match limit {
            0 => size_hint,
            limit => size_hint.min(limit),
        });
        while let Some(chunk) = response.chunk().await.map_err(describe_reqwest)? {
            if self.body_size_limit > 0 && (body.len() + chunk.len()) as u64 > self.body_size_limit
            {
                return Err(format!(
                    "body size limit exceeded: more than {} bytes",
                    self.body_size_limit
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, format))
    }
}

/// reqwest's errors carry their cause in `source()`; the target's lastError should
/// say what went wrong, not only "error sending request".
fn describe_reqwest(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "context deadline exceeded".to_string();
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The HTTP client of a job: Prometheus's Accept header, gzip, the job's
/// authentication and TLS settings. Files (passwords, tokens, certificates) are read
/// here, so a reload picks up changed ones.
pub fn build_client(cfg: &ScrapeConfig) -> Result<reqwest::Client, String> {
    build_http_client(&ClientSettings {
        owner: format!("job {:?}", cfg.job_name),
        accept: Some(SCRAPE_ACCEPT_HEADER),
        basic_auth: cfg.basic_auth.as_ref(),
        authorization: cfg.effective_authorization(),
        tls: &cfg.tls_config,
        follow_redirects: cfg.follow_redirects,
        enable_http2: cfg.enable_http2,
    })
}

/// What Prometheus's `HTTPClientConfig` sets: credentials, TLS, redirects, HTTP/2.
pub struct ClientSettings<'a> {
    /// Who the client is for, as errors name it (`job "node"`, `alertmanager …`).
    pub owner: String,
    pub accept: Option<&'static str>,
    pub basic_auth: Option<&'a BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls: &'a TlsConfig,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

/// An HTTP client with the settings' credentials (sent with every request), TLS and
/// redirect policy.
pub fn build_http_client(cfg: &ClientSettings) -> Result<reqwest::Client, String> {
    let owner = &cfg.owner;
    let mut headers = HeaderMap::new();
    if let Some(accept) = cfg.accept {
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
    }
    if let Some(basic) = cfg.basic_auth {
        let password = match (&basic.password, &basic.password_file) {
            (Some(p), _) => p.expose().to_string(),
            (None, Some(f)) => read_secret(f, owner, "basic_auth.password_file")?,
            (None, None) => String::new(),
        };
        let token = base64_encode(format!("{}:{}", basic.username, password).as_bytes());
        headers.insert(
            AUTHORIZATION,
            header_value(&format!("Basic {token}"), owner)?,
        );
    } else if let Some(auth) = &cfg.authorization {
        let credentials = match (&auth.credentials, &auth.credentials_file) {
            (Some(c), _) => c.expose().to_string(),
            (None, Some(f)) => read_secret(f, owner, "authorization.credentials_file")?,
            (None, None) => String::new(),
        };
        headers.insert(
            AUTHORIZATION,
            header_value(&format!("{} {credentials}", auth.credentials_type), owner)?,
        );
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .user_agent(concat!("ODIN/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .pool_max_idle_per_host(1)
        .redirect(if cfg.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
    if !cfg.enable_http2 {
        builder = builder.http1_only();
    }
    let tls = cfg.tls;
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some((cert.into(), key.into())),
        (None, None) => None,
        _ => {
            return Err(format!(
                "{owner}: tls_config needs both cert_file and key_file"
            ));
        }
    };
    let settings = crate::security::tls::ClientTlsSettings {
        ca_file: tls.ca_file.as_ref().map(Into::into),
        identity,
        server_name: tls.server_name.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
        tls13_only: tls.min_version == Some(TlsVersion::Tls13),
        http2: cfg.enable_http2,
    };
    let tls = crate::security::tls::client_config(&settings)
        .map_err(|e| format!("{owner}: tls_config.{e}"))?;
    builder = builder.use_preconfigured_tls(tls);
    builder
        .build()
        .map_err(|e| format!("{owner}: http client: {e}"))
}

fn read_secret(path: &str, owner: &str, key: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{owner}: {key} {path}: {e}"))
}

fn header_value(s: &str, owner: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(s)
        .map_err(|_| format!("{owner}: credentials are not a valid HTTP header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Standard base64 with padding, for basic auth.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(char::from(ALPHABET.get(idx).copied().unwrap_or(b'=')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
        }
    }
}
