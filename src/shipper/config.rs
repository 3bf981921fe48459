//! The object storage configuration, in the shape of Thanos's objstore config
//! (`--objstore.config-file`), so the same file serves ODIN and the Thanos
//! components that read the bucket:
//!
//! ```yaml
//! type: S3
//! config:
//!   bucket: metrics
//!   endpoint: minio.example:9000
//!   region: us-east-1
//!   access_key: …        # or AWS_ACCESS_KEY_ID
//!   secret_key: …        # or AWS_SECRET_ACCESS_KEY
//!   insecure: false      # true: plain http
//!   bucket_lookup_type: auto   # path | virtual-hosted | auto
//! ```
//!
//! ```yaml
//! type: FILESYSTEM
//! config:
//!   directory: /var/lib/odin-bucket
//! ```
//!
//! In ODIN's own config file the same object sits under `storage.object_store`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use serde::Deserialize;

use crate::model::Secret;
use crate::shipper::error::{Result, ShipperError};

/// `storage.object_store` / the `--objstore.config-file` contents. The `type` is
/// matched without regard to case, as Thanos does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", content = "config", deny_unknown_fields)]
pub enum ObjectStoreConfig {
    /// A directory on a local (or mounted) filesystem, laid out as the bucket.
    #[serde(rename = "FILESYSTEM", alias = "filesystem", alias = "Filesystem")]
    Filesystem(FilesystemConfig),
    /// Amazon S3 or any S3-compatible server (MinIO, Ceph RGW, SeaweedFS, moto …).
    #[serde(rename = "S3", alias = "s3")]
    S3(S3Config),
}

/// `type: FILESYSTEM` `config:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// The bucket's root directory; created when missing.
    pub directory: String,
}

/// `type: S3` `config:` — the keys of Thanos's S3 config that ODIN acts on; any other
/// key is refused by name rather than ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// `host[:port]` (Thanos's form) or a full `http(s)://` URL; empty: AWS S3 in
    /// `region`.
    #[serde(default)]
    pub endpoint: String,
    /// Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: String,
    /// Default: `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key: String,
    /// Default: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_key: Secret,
    /// Default: `AWS_SESSION_TOKEN`.
    #[serde(default)]
    pub session_token: Secret,
    /// Plain http instead of https.
    #[serde(default)]
    pub insecure: bool,
    /// `path`, `virtual-hosted` or `auto` (Thanos's default: virtual-hosted for AWS,
    /// path style for any other endpoint).
    #[serde(default)]
    pub bucket_lookup_type: BucketLookupType,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum BucketLookupType {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "path")]
    Path,
    #[serde(rename = "virtual-hosted")]
    VirtualHosted,
}

/// How requests to the store behave. Each request fails fast (a short retry inside
/// `object_store`); the shipper's own back-off spaces out the attempts during an
/// outage.
#[derive(Debug, Clone, Copy)]
pub struct ClientTuning {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: usize,
}

impl Default for ClientTuning {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(300),
            max_retries: 2,
        }
    }
}

impl ObjectStoreConfig {
    /// Parses a Thanos objstore YAML file's text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Self> {
        let cfg: ObjectStoreConfig = serde_saphyr::from_str(text)
            .map_err(|e| ShipperError::Config(format!("parse {path}: {e}")))?;
        cfg.validate()
            .map_err(|e| ShipperError::Config(format!("{path}: {e}")))?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ShipperError::io(format!("read {}", path.display()), e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Checks what the types cannot; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            ObjectStoreConfig::Filesystem(f) => {
                if f.directory.trim().is_empty() {
                    return Err("config.directory: must be set".into());
                }
            }
            ObjectStoreConfig::S3(s) => {
                if s.bucket.trim().is_empty() {
                    return Err("config.bucket: must be set".into());
                }
                if s.access_key.is_empty() != s.secret_key.is_empty() {
                    return Err(
                        "config.access_key, config.secret_key: set both or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used)"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// A short description for logs (no secrets).
    pub fn describe(&self) -> String {
        match self {
            ObjectStoreConfig::Filesystem(f) => format!("FILESYSTEM {}", f.directory),
            ObjectStoreConfig::S3(s) => format!(
                "S3 bucket {} at {}",
                s.bucket,
                if s.endpoint.is_empty() {
                    "AWS"
                } else {
                    &s.endpoint
                }
            ),
        }
    }

    /// Builds the client. The filesystem directory is created when missing.
    pub fn build(&self, tuning: ClientTuning) -> Result<Arc<dyn ObjectStore>> {
        match self {
            ObjectStoreConfig::Filesystem(f) => {
                std::fs::create_dir_all(&f.directory)
                    .map_err(|e| ShipperError::io(format!("create {}", f.directory), e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&f.directory)
                    .map_err(|e| ShipperError::store(format!("open {}", f.directory), e))?
                    .with_automatic_cleanup(true)
                    .with_fsync(true);
                Ok(Arc::new(fs))
            }
            ObjectStoreConfig::S3(s) => Ok(Arc::new(build_s3(s, tuning)?)),
        }
    }
}

/// The endpoint URL and whether requests name the bucket in the host.
fn s3_endpoint(s: &S3Config) -> (Option<String>, bool) {
    let scheme = if s.insecure { "http" } else { "https" };
    let ep = s.endpoint.trim().trim_end_matches('/');
    let aws = ep.is_empty() || ep.ends_with("amazonaws.com");
    let virtual_hosted = match s.bucket_lookup_type {
        BucketLookupType::Path => false,
        BucketLookupType::VirtualHosted => true,
        BucketLookupType::Auto => aws,
    };
    if ep.is_empty() {
        return (None, virtual_hosted);
    }
    let (scheme, host) = match ep.split_once("://") {
        Some((sch, host)) => (sch, host),
        None => (scheme, ep),
    };
    // object_store expects a virtual-hosted endpoint to carry the bucket already.
    let url = if virtual_hosted {
        format!("{scheme}://{}.{host}", s.bucket)
    } else {
        format!("{scheme}://{host}")
    };
    (Some(url), virtual_hosted)
}

fn build_s3(s: &S3Config, tuning: ClientTuning) -> Result<object_store::aws::AmazonS3> {
    use object_store::aws::AmazonS3Builder;
    // Environment first (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION …), then
    // the file's keys where given.
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&s.bucket);
    if !s.region.is_empty() {
        b = b.with_region(&s.region);
    } else if std::env::var_os("AWS_REGION").is_none()
        && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        b = b.with_region("us-east-1");
    }
    if !s.access_key.is_empty() {
        b = b
            .with_access_key_id(&s.access_key)
            .with_secret_access_key(s.secret_key.expose());
    }
    if !s.session_token.is_empty() {
        b = b.with_token(s.session_token.expose());
    }
    let (endpoint, virtual_hosted) = s3_endpoint(s);
    if let Some(url) = &endpoint {
        b = b.with_endpoint(url);
    }
    let http = endpoint
        .as_deref()
        .is_some_and(|u| u.starts_with("http://"));
    b = b
        .with_virtual_hosted_style_request(virtual_hosted)
        .with_allow_http(http || s.insecure)
        .with_client_options(
            object_store::ClientOptions::new()
                .with_allow_http(http || s.insecure)
                .with_connect_timeout(tuning.connect_timeout)
                .with_timeout(tuning.request_timeout),
        )
        .with_retry(object_store::RetryConfig {
            max_retries: tuning.max_retries,
            retry_timeout: Duration::from_secs(30),
            ..object_store::RetryConfig::default()
        });
    b.build()
        .map_err(|e| ShipperError::store(format!("configure S3 bucket {}", s.bucket), e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_s3_config() {
        let c = ObjectStoreConfig::parse(
            "type: s3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:9000\n  access_key: a\n  secret_key: s\n  insecure: true\n  bucket_lookup_type: path\n",
            "x.yml",
        )
        .unwrap();
        let ObjectStoreConfig::S3(s) = &c else {
            panic!("{c:?}")
        };
        assert_eq!(s.bucket, "b");
        assert!(s.insecure);
        assert_eq!(s.bucket_lookup_type, BucketLookupType::Path);
        assert_eq!(
            s3_endpoint(s),
            (Some("http://127.0.0.1:9000".to_string()), false)
        );
        c.build(ClientTuning::default()).unwrap();
    }

    #[test]
    fn endpoint_styles() {
        let mut s = S3Config {
            bucket: "b".into(),
            ..S3Config::default()
        };
        assert_eq!(s3_endpoint(&s), (None, true), "AWS: virtual-hosted");
        s.endpoint = "minio:9000".into();
        assert_eq!(s3_endpoint(&s), (Some("https://minio:9000".into()), false));
        s.bucket_lookup_type = BucketLookupType::VirtualHosted;
        assert_eq!(s3_endpoint(&s), (Some("https://b.minio:9000".into()), true));
        s.endpoint = "http://minio:9000/".into();
        s.bucket_lookup_type = BucketLookupType::Path;
        assert_eq!(s3_endpoint(&s), (Some("http://minio:9000".into()), false));
    }

    #[test]
    fn unknown_keys_and_missing_values_are_named() {
        let e = ObjectStoreConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  sse_config: {}\n",
            "x.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sse_config"), "{e}");
        let e = ObjectStoreConfig::parse("type: GCS\nconfig:\n  bucket: b\n", "x.yml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("GCS"), "{e}");
        let e = ObjectStoreConfig::parse("type: S3\nconfig:\n  endpoint: x\n", "x.yml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bucket"), "{e}");
        let e =
            ObjectStoreConfig::parse("type: S3\nconfig:\n  bucket: b\n  access_key: a\n", "x.yml")
                .unwrap_err()
                .to_string();
        assert!(e.contains("secret_key"), "{e}");
        let e = ObjectStoreConfig::parse("type: FILESYSTEM\nconfig:\n  directory: ''\n", "x.yml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.directory"), "{e}");
    }

    #[test]
    fn filesystem_store_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        let c = ObjectStoreConfig::Filesystem(FilesystemConfig {
            directory: root.display().to_string(),
        });
        c.build(ClientTuning::default()).unwrap();
        assert!(root.is_dir());
    }
}
