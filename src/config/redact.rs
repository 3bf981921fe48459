//! The configuration as `/api/v1/status/config` shows it: every secret replaced by
//! `<secret>`, as Prometheus shows its `Secret` fields.
//!
//! The file is parsed into an ordered tree (so keys keep the order they were written
//! in), every value under a key that holds a secret in Prometheus's, Thanos's or
//! ODIN's configuration is replaced, and the tree is written back as YAML. Comments
//! are lost, as in Prometheus's own output; nothing of a secret can survive in one.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// What a secret is shown as.
pub const SECRET: &str = "<secret>";

/// Keys whose values are secrets wherever they appear: scrape `basic_auth.password`,
/// `authorization.credentials`, `bearer_token`, `oauth2.client_secret`, TLS `key`
/// (inline), and the object store's `secret_key` / `session_token`.
const SECRET_KEYS: &[&str] = &[
    "password",
    "credentials",
    "bearer_token",
    "client_secret",
    "secret_key",
    "session_token",
    "key",
];

/// A YAML document as an ordered tree.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// `text` with every secret replaced by `<secret>`; an error when it does not parse.
/// The error says nothing of the text: a parser's message quotes the offending
/// line, which may be the secret.
pub fn redact_config_text(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Ok(String::new());
    }
    let mut tree: Node = serde_saphyr::from_str(text)
        .map_err(|_| "the configuration file does not parse as YAML".to_string())?;
    redact(&mut tree);
    serde_saphyr::to_string(&tree)
        .map_err(|_| "the configuration cannot be written back as YAML".to_string())
}

/// The values under secret keys in `text`, or `None` when it is not YAML at all.
pub(crate) fn secret_values(text: &str) -> Option<Vec<String>> {
    let tree: Node = serde_saphyr::from_str(text).ok()?;
    let mut out = Vec::new();
    collect_secrets(&tree, &mut out);
    Some(out)
}

fn collect_secrets(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::Map(entries) => {
            for (k, v) in entries {
                let secret = matches!(k, Node::Str(name) if SECRET_KEYS.contains(&name.as_str()));
                match v {
                    Node::Str(value) if secret && !value.is_empty() => out.push(value.clone()),
                    _ => collect_secrets(v, out),
                }
            }
        }
        Node::Seq(items) => items.iter().for_each(|i| collect_secrets(i, out)),
        _ => {}
    }
}

fn redact(node: &mut Node) {
    match node {
        Node::Map(entries) => {
            for (k, v) in entries {
                let secret = matches!(k, Node::Str(name) if SECRET_KEYS.contains(&name.as_str()));
                if secret && !matches!(v, Node::Null) {
                    *v = Node::Str(SECRET.to_string());
                } else {
                    redact(v);
                }
            }
        }
        Node::Seq(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Uint(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry()? {
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(v) => s.serialize_bool(*v),
            Node::Int(v) => s.serialize_i64(*v),
            Node::Uint(v) => s.serialize_u64(*v),
            Node::Float(v) => s.serialize_f64(*v),
            Node::Str(v) => s.serialize_str(v),
            Node::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scrape_and_object_store_secrets_are_shown_as_secret() {
        let text = r#"
global:
  scrape_interval: 15s   # a comment
scrape_configs:
  - job_name: a
    basic_auth: {username: admin, password: "hunter2"}
    static_configs: [{targets: ['x:1']}]
  - job_name: b
    authorization:
      type: Bearer
      credentials: tok-en
    bearer_token: legacy-token
    tls_config:
      key: |
        -----BEGIN PRIVATE KEY-----
        abc
storage:
  object_store:
    type: S3
    config:
      bucket: odin
      access_key: AKIA
      secret_key: "s3cr3t"
      session_token: sess
"#;
        let out = redact_config_text(text).unwrap();
        for secret in [
            "hunter2",
            "tok-en",
            "legacy-token",
            "BEGIN PRIVATE",
            "s3cr3t",
            "sess\n",
        ] {
            assert!(!out.contains(secret), "{secret} in:\n{out}");
        }
        assert_eq!(out.matches(SECRET).count(), 6, "{out}");
        // Everything else is kept, in the file's order.
        let tree: Node = serde_saphyr::from_str(&out).unwrap();
        let Node::Map(top) = tree else { panic!() };
        let keys: Vec<_> = top.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            ["global", "scrape_configs", "storage"].map(|k| Node::Str(k.into()))
        );
        assert!(out.contains("username: admin"), "{out}");
        assert!(out.contains("access_key: AKIA"), "{out}");
        assert!(out.contains("15s"), "{out}");
    }

    #[test]
    fn a_file_without_secrets_keeps_its_values_and_an_empty_one_stays_empty() {
        let out = redact_config_text("global:\n  external_labels: {a: 'true', b: 1}\n").unwrap();
        let back: Node = serde_saphyr::from_str(&out).unwrap();
        let want: Node =
            serde_saphyr::from_str("global:\n  external_labels: {a: 'true', b: 1}\n").unwrap();
        assert_eq!(back, want, "{out}");
        assert_eq!(redact_config_text("").unwrap(), "");
    }

    #[test]
    fn a_file_that_does_not_parse_is_an_error_not_its_text() {
        let e = redact_config_text("password: [unclosed").unwrap_err();
        assert!(!e.is_empty());
    }
}
