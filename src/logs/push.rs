//! Loki push requests (`POST /loki/api/v1/push`): the body decoded, and each stream
//! and entry checked as Loki's distributor checks them, with its limits, defaults
//! and messages.
//!
//! Formats, chosen as Loki chooses (`pkg/loghttp/push`):
//! - `Content-Encoding`: none or `snappy` (the body as it is), `gzip`, `deflate`;
//!   anything else is refused.
//! - `Content-Type` `application/json` (parameters allowed): Loki's JSON,
//!   `{"streams":[{"stream":{"k":"v"},"values":[["<ns>","<line>",{metadata}]]}]}`,
//!   the timestamp a string of Unix nanoseconds. Any other type: a block-format snappy
//!   body holding `logproto.PushRequest` (what Promtail, Alloy and the Docker and
//!   Fluent Bit clients send). No type at all is refused, as Go's `mime` does.
//!
//! Protobuf (`pkg/push/push.proto`; unknown fields skipped):
//! ```text
//! PushRequest      { repeated StreamAdapter streams = 1; }
//! StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; }
//! EntryAdapter     { Timestamp timestamp = 1; string line = 2;
//!                    repeated LabelPairAdapter structuredMetadata = 3; }
//! LabelPairAdapter { string name = 1; string value = 2; }
//! Timestamp        { int64 seconds = 1; int32 nanos = 2; }
//! ```
//!
//! A stream's labels travel as text (`{app="x", job="y"}`, Prometheus's metric
//! syntax); a JSON stream's label object is written as that text first, as Loki does,
//! so both take one path. Checking follows Loki: a stream with a bad label set is
//! dropped, an entry out of bounds is dropped, the rest is kept, and the errors are
//! reported together ([`PushErrors`]).

use std::borrow::Cow;
use std::io::Read;

use crate::model::{Label, Labels, is_valid_label_name};
use crate::remote::decode::{DecodeError, LEN, Reader, VARINT};

/// How a push body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFormat {
    Json,
    /// Snappy-compressed `logproto.PushRequest`.
    Protobuf,
}

/// One stream of a push request, borrowed from the decoded body where it can be.
#[derive(Debug, Clone, PartialEq)]
pub struct PushStream<'a> {
    /// The label set as text, as the client sent it.
    pub labels: Cow<'a, str>,
    pub entries: Vec<PushEntry<'a>>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEntry<'a> {
    /// Unix nanoseconds.
    pub ts_ns: i64,
    pub line: Cow<'a, str>,
    /// Structured metadata: (name, value), in the order sent (JSON: sorted by name).
    pub metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// Why a body was refused whole (Loki answers 400 with the message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error("Content-Encoding {0:?} not supported")]
    Encoding(String),
    #[error("mime: no media type")]
    NoContentType,
    #[error("{0}")]
    Decompress(String),
    #[error("request body too large: more than {0} bytes decompressed")]
    TooLarge(usize),
    #[error("request too large: more than {MAX_PUSH_ITEMS} entries and structured metadata labels")]
    TooManyItems,
    #[error("{0}")]
    Protobuf(String),
    #[error("{0}")]
    Json(String),
}

impl From<DecodeError> for PushError {
    fn from(e: DecodeError) -> Self {
        PushError::Protobuf(format!("proto: {e}"))
    }
}

/// The body's format and its bytes with the content encoding undone, at most
/// `max_bytes` of them (a gzip bomb is refused, not inflated). The protobuf's own
/// snappy block is undone too.
pub fn decompress<'a>(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &'a [u8],
    max_bytes: usize,
) -> Result<(PushFormat, Cow<'a, [u8]>), PushError> {
    let media = content_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .ok_or(PushError::NoContentType)?;
    let format = if media == "application/json" {
        PushFormat::Json
    } else {
        PushFormat::Protobuf
    };
    let inflate = |reader: &mut dyn Read| -> Result<Vec<u8>, PushError> {
        let mut out = Vec::new();
        reader
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| PushError::Decompress(e.to_string()))?;
        if out.len() > max_bytes {
            return Err(PushError::TooLarge(max_bytes));
        }
        Ok(out)
    };
    let plain: Cow<'a, [u8]> = match content_encoding.map(str::trim).unwrap_or("") {
        "" | "snappy" => Cow::Borrowed(body),
        "gzip" => Cow::Owned(inflate(&mut flate2::read::GzDecoder::new(body))?),
        "deflate" => Cow::Owned(inflate(&mut flate2::read::DeflateDecoder::new(body))?),
        other => return Err(PushError::Encoding(other.to_string())),
    };
    if format == PushFormat::Json {
        if json_tokens(&plain) > MAX_PUSH_JSON_TOKENS {
            return Err(PushError::TooManyItems);
        }
        return Ok((format, plain));
    }
    let n = snap::raw::decompress_len(&plain)
        .map_err(|_| PushError::Decompress("snappy: corrupt input".into()))?;
    if n > max_bytes {
        return Err(PushError::Decompress(format!(
            "message expected size larger than max ({n} vs {max_bytes})"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&plain)
        .map_err(|_| PushError::Decompress("snappy: corrupt input".into()))?;
    if protobuf_items(&raw) > MAX_PUSH_ITEMS {
        return Err(PushError::TooManyItems);
    }
    Ok((format, Cow::Owned(raw)))
}

/// Streams, entries and structured metadata labels a push may hold. Decoded, each
/// costs far more than its bytes on the wire (an empty entry is 4 bytes of
/// protobuf and about 200 of memory on its way to the log), so the body's size
/// alone does not bound a push's memory. A Promtail batch (1 MiB) holds about
/// 10,000.
pub const MAX_PUSH_ITEMS: usize = 1_000_000;

/// The JSON body's bound: its structural tokens (`[`, `{`, `:` and `,` outside
/// strings), of which an entry has three (`["ts","line"],`) and every other value
/// at least one, so that empty streams or stray values cost as entries do.
pub const MAX_PUSH_JSON_TOKENS: usize = 4 * MAX_PUSH_ITEMS;

/// A JSON body's structural tokens, counted without decoding.
fn json_tokens(body: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (0, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' | b':' | b',' => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// A `PushRequest`'s streams, entries and structured metadata labels, counted by
/// walking its fields without decoding them (a damaged body counts what precedes
/// the damage; decoding reports it).
fn protobuf_items(body: &[u8]) -> usize {
    fn fields(buf: &[u8], mut each: impl FnMut(u32, &[u8])) {
        let mut r = Reader { buf };
        while !r.done() {
            let Ok((field, wire)) = r.key() else { return };
            if wire == LEN {
                let Ok(bytes) = r.bytes() else { return };
                each(field, bytes);
            } else if r.skip(wire, field).is_err() {
                return;
            }
        }
    }
    let mut n = 0;
    fields(body, |field, stream| {
        if field == 1 {
            n += 1;
            fields(stream, |field, entry| {
                if field == 2 {
                    n += 1;
                    fields(entry, |field, _| n += usize::from(field == 3));
                }
            });
        }
    });
    n
}

/// The streams of a decompressed body.
pub fn decode(format: PushFormat, body: &[u8]) -> Result<Vec<PushStream<'_>>, PushError> {
    match format {
        PushFormat::Protobuf => decode_protobuf(body),
        PushFormat::Json => decode_json(body),
    }
}

/// `logproto.PushRequest`, its strings borrowed from `body`.
pub fn decode_protobuf(body: &[u8]) -> Result<Vec<PushStream<'_>>, PushError> {
    let mut r = Reader { buf: body };
    let mut streams = Vec::new();
    while !r.done() {
        match r.key()? {
            (1, LEN) => streams.push(stream_message(r.bytes()?)?),
            (field, wire) => r.skip(wire, field)?,
        }
    }
    Ok(streams)
}

fn utf8<'a>(b: &'a [u8], what: &str) -> Result<&'a str, PushError> {
    std::str::from_utf8(b)
        .map_err(|_| PushError::Protobuf(format!("proto: invalid UTF-8 in {what}")))
}

fn stream_message(buf: &[u8]) -> Result<PushStream<'_>, PushError> {
    let mut r = Reader { buf };
    let mut stream = PushStream {
        labels: Cow::Borrowed(""),
        entries: Vec::new(),
    };
    while !r.done() {
        match r.key()? {
            (1, LEN) => stream.labels = Cow::Borrowed(utf8(r.bytes()?, "stream labels")?),
            (2, LEN) => stream.entries.push(entry_message(r.bytes()?)?),
            (field, wire) => r.skip(wire, field)?,
        }
    }
    Ok(stream)
}

fn entry_message(buf: &[u8]) -> Result<PushEntry<'_>, PushError> {
    let mut r = Reader { buf };
    let mut entry = PushEntry {
        ts_ns: 0,
        line: Cow::Borrowed(""),
        metadata: Vec::new(),
    };
    while !r.done() {
        match r.key()? {
            (1, LEN) => entry.ts_ns = timestamp_message(r.bytes()?)?,
            (2, LEN) => entry.line = Cow::Borrowed(utf8(r.bytes()?, "a log line")?),
            (3, LEN) => {
                let mut p = Reader { buf: r.bytes()? };
                let (mut name, mut value) = ("", "");
                while !p.done() {
                    match p.key()? {
                        (1, LEN) => name = utf8(p.bytes()?, "structured metadata")?,
                        (2, LEN) => value = utf8(p.bytes()?, "structured metadata")?,
                        (field, wire) => p.skip(wire, field)?,
                    }
                }
                entry
                    .metadata
                    .push((Cow::Borrowed(name), Cow::Borrowed(value)));
            }
            (field, wire) => r.skip(wire, field)?,
        }
    }
    Ok(entry)
}

/// A `google.protobuf.Timestamp` as Unix nanoseconds (saturating).
fn timestamp_message(buf: &[u8]) -> Result<i64, PushError> {
    let mut r = Reader { buf };
    let (mut seconds, mut nanos) = (0i64, 0i64);
    while !r.done() {
        match r.key()? {
            (1, VARINT) => seconds = r.varint()? as i64,
            // int32 on the wire: a negative value is sign-extended to 64 bits.
            (2, VARINT) => nanos = i64::from(r.varint()? as i32),
            (field, wire) => r.skip(wire, field)?,
        }
    }
    Ok(seconds.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Loki's JSON push body.
pub fn decode_json(body: &[u8]) -> Result<Vec<PushStream<'_>>, PushError> {
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow, default)]
        streams: Vec<JsonStream<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct JsonStream<'a> {
        #[serde(borrow, default)]
        stream: std::collections::BTreeMap<Cow<'a, str>, Cow<'a, str>>,
        #[serde(borrow, default)]
        values: Vec<JsonEntry<'a>>,
    }
    /// `["<ns>", "<line>"]` or `["<ns>", "<line>", {"name": "value", …}]`.
    struct JsonEntry<'a>(PushEntry<'a>);
    impl<'de: 'a, 'a> serde::Deserialize<'de> for JsonEntry<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            use serde::de::Error;
            #[derive(serde::Deserialize)]
            #[serde(untagged)]
            enum Item<'a> {
                #[serde(borrow)]
                Text(Cow<'a, str>),
                #[serde(borrow)]
                Metadata(std::collections::BTreeMap<Cow<'a, str>, Cow<'a, str>>),
                /// Anything else (a number where a string belongs): refused below,
                /// with the entry's own message.
                Other(serde::de::IgnoredAny),
            }
            let items: Vec<Item<'a>> = serde::Deserialize::deserialize(d)?;
            if !(2..=3).contains(&items.len()) {
                return Err(D::Error::custom(
                    "error reading entry: array must have at least 2 and up to 3 values",
                ));
            }
            let mut items = items.into_iter();
            let ts_ns = match items.next() {
                Some(Item::Text(t)) => t.parse::<i64>().map_err(|e| {
                    D::Error::custom(format!(
                        "error reading entry timestamp: strconv.ParseInt: parsing {t:?}: {e}"
                    ))
                })?,
                _ => {
                    return Err(D::Error::custom(
                        "error reading entry timestamp: expected a string of Unix nanoseconds",
                    ));
                }
            };
            let line = match items.next() {
                Some(Item::Text(l)) => l,
                _ => {
                    return Err(D::Error::custom(
                        "error reading entry line: expected a string",
                    ));
                }
            };
            let metadata = match items.next() {
                None => Vec::new(),
                Some(Item::Metadata(m)) => m.into_iter().collect(),
                Some(Item::Text(_) | Item::Other(_)) => {
                    return Err(D::Error::custom(
                        "error reading structured metadata: expected an object",
                    ));
                }
            };
            Ok(JsonEntry(PushEntry {
                ts_ns,
                line,
                metadata,
            }))
        }
    }
    let request: Request<'_> =
        serde_json::from_slice(body).map_err(|e| PushError::Json(e.to_string()))?;
    Ok(request
        .streams
        .into_iter()
        .map(|s| PushStream {
            labels: Cow::Owned(label_text(s.stream.iter())),
            entries: s.values.into_iter().map(|e| e.0).collect(),
        })
        .collect())
}

/// A label set as Loki writes one: `{a="1", b="2"}`, names in the order given,
/// values quoted as Go's `strconv.Quote` does.
pub fn label_text<'a, N, V>(pairs: impl Iterator<Item = (N, V)>) -> String
where
    N: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name.as_ref());
        out.push('=');
        quote_into(value.as_ref(), &mut out);
    }
    out.push('}');
    out
}

fn quote_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses a stream's label text as Loki does (Prometheus's `ParseMetric`): an
/// optional metric name (which becomes `__name__`), then `{name="value", …}`, values
/// in `"`, `'` or backquotes with Go's escapes. Labels with empty values are dropped;
/// the rest come back sorted. Errors read as Prometheus's: `1:<col>: parse error: …`.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut p = LabelParser {
        s: text.as_bytes(),
        text,
        at: 0,
    };
    let mut pairs = Vec::new();
    p.space();
    if p.peek()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
    {
        let name = p.name(true)?;
        pairs.push(("__name__".to_string(), name));
        p.space();
    }
    match p.peek() {
        None if !pairs.is_empty() => {}
        Some(b'{') => {
            p.at += 1;
            loop {
                p.space();
                match p.peek() {
                    Some(b'}') => {
                        p.at += 1;
                        break;
                    }
                    Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
                    Some(_) => {
                        return Err(p.error(format!(
                            "unexpected character inside braces: {:?}",
                            p.char_at()
                        )));
                    }
                    None => return Err(p.error("unexpected end of input inside braces".into())),
                }
                let name = p.name(false)?;
                p.space();
                if p.peek() != Some(b'=') {
                    return Err(p.error(format!(
                        "unexpected {} in label matching, expected \"=\"",
                        p.describe()
                    )));
                }
                p.at += 1;
                p.space();
                let value = p.string()?;
                pairs.push((name, value));
                p.space();
                match p.peek() {
                    Some(b',') => p.at += 1,
                    Some(b'}') => {}
                    _ => {
                        return Err(p.error(format!(
                            "unexpected {} in label matching, expected \",\" or \"}}\"",
                            p.describe()
                        )));
                    }
                }
            }
        }
        _ => {
            return Err(p.error(format!("unexpected {}, expected a label set", p.describe())));
        }
    }
    p.space();
    if p.peek().is_some() {
        return Err(p.error(format!("unexpected {} after the label set", p.describe())));
    }
    pairs.retain(|(_, v)| !v.is_empty());
    pairs.sort();
    Ok(pairs)
}

struct LabelParser<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
}

impl LabelParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn char_at(&self) -> char {
        self.text
            .get(self.at..)
            .and_then(|t| t.chars().next())
            .unwrap_or('\u{fffd}')
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "end of input".into(),
            Some(_) => format!("character {:?}", self.char_at()),
        }
    }

    fn error(&self, msg: String) -> String {
        format!("1:{}: parse error: {msg}", self.at + 1)
    }

    fn space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn name(&mut self, metric: bool) -> Result<String, String> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || (metric && c == b':'))
        {
            self.at += 1;
        }
        let name = &self.text[start..self.at];
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err(self.error(format!("invalid label name {name:?}")));
        }
        Ok(name.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'' | b'`')) => q,
            _ => {
                return Err(self.error(format!(
                    "unexpected {} in label matching, expected string",
                    self.describe()
                )));
            }
        };
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(c) = rest.chars().next() else {
                self.at = start;
                return Err(self.error("unterminated quoted string".into()));
            };
            self.at += c.len_utf8();
            match c {
                c if c as u32 == u32::from(quote) => return Ok(out),
                '\\' if quote != b'`' => out.push(self.escape(quote)?),
                '\n' if quote != b'`' => {
                    return Err(self.error("unterminated quoted string".into()));
                }
                c => out.push(c),
            }
        }
    }

    /// The character of an escape sequence, the backslash already read.
    fn escape(&mut self, quote: u8) -> Result<char, String> {
        let Some(c) = self.peek() else {
            return Err(self.error("escape sequence not terminated".into()));
        };
        self.at += 1;
        let hex = |p: &mut Self, n: usize| -> Result<char, String> {
            let digits = p.text.get(p.at..p.at + n).unwrap_or("");
            let v = u32::from_str_radix(digits, 16)
                .ok()
                .filter(|_| digits.len() == n)
                .ok_or_else(|| p.error("invalid escape sequence".into()))?;
            p.at += n;
            char::from_u32(v)
                .ok_or_else(|| p.error("escape sequence is an invalid Unicode code point".into()))
        };
        Ok(match c {
            b'a' => '\u{7}',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'v' => '\u{b}',
            b'\\' => '\\',
            b'x' => hex(self, 2)?,
            b'u' => hex(self, 4)?,
            b'U' => hex(self, 8)?,
            b'0'..=b'7' => {
                let digits = self.text.get(self.at - 1..self.at + 2).unwrap_or("");
                let v = u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|v| digits.len() == 3 && *v <= 255)
                    .ok_or_else(|| self.error("invalid escape sequence".into()))?;
                self.at += 2;
                char::from_u32(v).unwrap_or('\u{fffd}')
            }
            q if q == quote => q as char,
            _ => return Err(self.error("unknown escape sequence".into())),
        })
    }
}

/// Loki's per-tenant ingestion limits (`limits_config`), with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PushLimits {
    /// `max_line_size`: 256 KB; 0: no limit.
    pub max_line_size: usize,
    /// `max_line_size_truncate`: cut longer lines instead of refusing them.
    pub max_line_size_truncate: bool,
    /// `max_label_names_per_series`: 15.
    pub max_label_names_per_series: usize,
    /// `max_label_name_length`: 1024.
    pub max_label_name_length: usize,
    /// `max_label_value_length`: 2048.
    pub max_label_value_length: usize,
    /// `reject_old_samples` (true) and `reject_old_samples_max_age` (1 week).
    pub reject_old_samples: bool,
    pub reject_old_samples_max_age_ns: i64,
    /// `creation_grace_period`: 10 minutes.
    pub creation_grace_period_ns: i64,
    /// `allow_structured_metadata`: true.
    pub allow_structured_metadata: bool,
    /// `max_structured_metadata_size`: 64 KB.
    pub max_structured_metadata_size: usize,
    /// `max_structured_metadata_entries_count`: 128.
    pub max_structured_metadata_entries: usize,
    /// `ingestion_rate_mb` (4) and `ingestion_burst_size_mb` (6): per tenant, MB
    /// of lines a second and the most at once.
    pub ingestion_rate_mb: f64,
    pub ingestion_burst_size_mb: f64,
    /// `max_global_streams_per_user`: 5000 active streams per tenant; 0: no limit.
    pub max_streams_per_tenant: usize,
}

impl Default for PushLimits {
    fn default() -> Self {
        const MINUTE: i64 = 60 * 1_000_000_000;
        PushLimits {
            max_line_size: 256 * 1024,
            max_line_size_truncate: false,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            reject_old_samples: true,
            reject_old_samples_max_age_ns: 7 * 24 * 60 * MINUTE,
            creation_grace_period_ns: 10 * MINUTE,
            allow_structured_metadata: true,
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries: 128,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            max_streams_per_tenant: 5000,
        }
    }
}

/// A stream that passed the checks, with the entries that did.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidStream<'a> {
    pub labels: Labels,
    pub entries: Vec<PushEntry<'a>>,
}

/// What checking a push request kept, and why it dropped the rest.
#[derive(Debug, Default)]
pub struct Checked<'a> {
    pub streams: Vec<ValidStream<'a>>,
    /// Why streams and entries were dropped, Loki's wording, grouped.
    pub errors: PushErrors,
    /// Entries kept, and their bytes (line and structured metadata), as Loki's
    /// messages count them.
    pub lines: usize,
    pub bytes: usize,
    /// What the rate limit takes: each entry's bytes, but at least
    /// [`MIN_ENTRY_CHARGE`].
    pub charged: usize,
}

/// The least bytes an entry costs against the ingestion rate: about what a line
/// holds of memory before its window is written out, whatever its length. Loki
/// charges a line's bytes alone, so empty lines would pass any rate; lines of 64
/// bytes or more (nearly all) are charged as Loki charges them, and a push whose
/// bytes fit the burst is never charged more than the burst.
pub const MIN_ENTRY_CHARGE: usize = 64;

/// Checks a request's streams and entries as Loki's distributor does at `now_ns`.
pub fn check<'a>(streams: Vec<PushStream<'a>>, limits: &PushLimits, now_ns: i64) -> Checked<'a> {
    let mut out = Checked::default();
    for stream in streams {
        if stream.entries.is_empty() {
            continue;
        }
        let raw = &stream.labels;
        let pairs = match parse_labels(raw) {
            Ok(p) => p,
            Err(e) => {
                out.errors
                    .add(format!("Error parsing labels '{raw}' with error: {e}"));
                continue;
            }
        };
        if pairs.is_empty() {
            out.errors
                .add("error at least one label pair is required per stream".into());
            continue;
        }
        if pairs.len() > limits.max_label_names_per_series {
            out.errors.add(format!(
                "entry for stream '{raw}' has {} label names; limit {}",
                pairs.len(),
                limits.max_label_names_per_series
            ));
            continue;
        }
        let shown = label_text(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        if let Some(e) = label_error(&pairs, &shown, limits) {
            out.errors.add(e);
            continue;
        }
        let labels = Labels::from_sorted(
            pairs
                .iter()
                .map(|(n, v)| Label {
                    name: n.as_str().into(),
                    value: v.as_str().into(),
                })
                .collect(),
        );
        // Numbered at the stream's first bad entry: a push of many good streams
        // keeps no copy of their labels.
        let mut stream_id = None;
        let mut kept = Vec::with_capacity(stream.entries.len());
        for mut entry in stream.entries {
            if let Some(problem) = entry_problem(&mut entry, limits, now_ns) {
                let id = *stream_id.get_or_insert_with(|| out.errors.stream_id(&shown));
                out.errors
                    .add_entry(id, problem, || problem.message(&shown, limits, now_ns));
                continue;
            }
            let bytes = entry.line.len()
                + entry
                    .metadata
                    .iter()
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>();
            out.lines += 1;
            out.bytes += bytes;
            out.charged += bytes.max(MIN_ENTRY_CHARGE);
            kept.push(entry);
        }
        if !kept.is_empty() {
            out.streams.push(ValidStream {
                labels,
                entries: kept,
            });
        }
    }
    out
}

/// The first thing wrong with a stream's (sorted) labels.
fn label_error(pairs: &[(String, String)], shown: &str, limits: &PushLimits) -> Option<String> {
    let mut last: Option<&str> = None;
    for (name, value) in pairs {
        if name.len() > limits.max_label_name_length {
            return Some(format!(
                "stream '{shown}' has label name too long: '{name}'"
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Some(format!(
                "stream '{shown}' has label value too long: '{value}'"
            ));
        }
        if last == Some(name.as_str()) {
            return Some(format!(
                "stream '{shown}' has duplicate label name: '{name}'"
            ));
        }
        if !is_valid_label_name(name) {
            return Some(format!("stream '{shown}' has invalid label name: '{name}'"));
        }
        last = Some(name);
    }
    None
}

/// Why an entry is dropped: Loki's checks, in Loki's order. Small and copyable, so
/// that a push of many bad entries is counted without writing a message for each
/// ([`PushErrors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryProblem {
    /// Older than `reject_old_samples_max_age` (its whole second).
    TooOld {
        second: i64,
    },
    /// Newer than `creation_grace_period` allows (its whole second).
    TooNew {
        second: i64,
    },
    /// Longer than `max_line_size` (its length).
    LineTooLong {
        len: usize,
    },
    MetadataDisallowed,
    MetadataTooLarge {
        size: usize,
    },
    MetadataTooMany {
        n: usize,
    },
}

/// Why `entry` is dropped, if it is; a line too long is cut instead where the
/// limits say so.
fn entry_problem(
    entry: &mut PushEntry<'_>,
    limits: &PushLimits,
    now_ns: i64,
) -> Option<EntryProblem> {
    let second = entry.ts_ns.div_euclid(1_000_000_000);
    let oldest = now_ns.saturating_sub(limits.reject_old_samples_max_age_ns);
    if limits.reject_old_samples && entry.ts_ns < oldest {
        return Some(EntryProblem::TooOld { second });
    }
    if entry.ts_ns > now_ns.saturating_add(limits.creation_grace_period_ns) {
        return Some(EntryProblem::TooNew { second });
    }
    let max = limits.max_line_size;
    if max > 0 && entry.line.len() > max {
        if limits.max_line_size_truncate {
            let mut cut = max;
            while !entry.line.is_char_boundary(cut) {
                cut -= 1;
            }
            entry.line = Cow::Owned(entry.line[..cut].to_string());
        } else {
            return Some(EntryProblem::LineTooLong {
                len: entry.line.len(),
            });
        }
    }
    if !entry.metadata.is_empty() {
        if !limits.allow_structured_metadata {
            return Some(EntryProblem::MetadataDisallowed);
        }
        let size: usize = entry.metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        if size > limits.max_structured_metadata_size {
            return Some(EntryProblem::MetadataTooLarge { size });
        }
        let n = entry.metadata.len();
        if n > limits.max_structured_metadata_entries {
            return Some(EntryProblem::MetadataTooMany { n });
        }
    }
    None
}

impl EntryProblem {
    /// Loki's message, for an entry of the stream shown as `shown`.
    fn message(self, shown: &str, limits: &PushLimits, now_ns: i64) -> String {
        let second = |s: i64| rfc3339(s.saturating_mul(1_000_000_000));
        match self {
            EntryProblem::TooOld { second: s } => format!(
                "entry for stream '{shown}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                second(s),
                rfc3339(now_ns.saturating_sub(limits.reject_old_samples_max_age_ns))
            ),
            EntryProblem::TooNew { second: s } => format!(
                "entry for stream '{shown}' has timestamp too new: {}",
                second(s)
            ),
            EntryProblem::LineTooLong { len } => format!(
                "Max entry size '{}' bytes exceeded for stream '{shown}' while adding an entry with length '{len}' bytes",
                limits.max_line_size
            ),
            EntryProblem::MetadataDisallowed => format!(
                "stream '{shown}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it."
            ),
            EntryProblem::MetadataTooLarge { size } => format!(
                "stream '{shown}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.",
                limits.max_structured_metadata_size
            ),
            EntryProblem::MetadataTooMany { n } => format!(
                "stream '{shown}' has too many structured metadata labels: '{n}', limit: '{}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.",
                limits.max_structured_metadata_entries
            ),
        }
    }
}

/// Unix nanoseconds as Go's `time.RFC3339` writes a UTC time (whole seconds).
fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || format!("{ns}ns"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Distinct messages [`grouped_errors`] lists; the rest are counted. (Loki lists
/// them all, but a message names its entry's time, so a push of old lines would
/// answer with megabytes.)
const MAX_LISTED_ERRORS: usize = 100;

/// The errors of one push, grouped as they are found, as Loki reports them together
/// ([`PushErrors::grouped`]): each distinct message once, with its count.
///
/// Bounded whatever the push: at most [`MAX_LISTED_ERRORS`] distinct messages are
/// kept (later ones only counted), and an entry's message is written only when it
/// is first listed. A push of a million bad entries under long labels costs counts,
/// not a million copies of the labels.
#[derive(Debug, Default)]
pub struct PushErrors {
    /// Distinct messages in the order first seen, with their counts.
    listed: Vec<(String, usize)>,
    /// Each listed error's place in `listed`.
    index: std::collections::HashMap<ErrorKey, usize>,
    /// The streams' label texts, numbered, so that an entry's key is small.
    streams: std::collections::HashMap<String, usize>,
    /// Errors not listed: their message was new once the list was full.
    unlisted: usize,
}

/// What makes two errors the same message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ErrorKey {
    Message(String),
    Entry {
        stream: usize,
        problem: EntryProblem,
    },
}

impl PushErrors {
    /// The number of a stream's label text, for [`PushErrors::add_entry`].
    pub fn stream_id(&mut self, shown: &str) -> usize {
        let next = self.streams.len();
        *self.streams.entry(shown.to_string()).or_insert(next)
    }

    /// One error, its message written.
    pub fn add(&mut self, message: String) {
        self.count(ErrorKey::Message(message.clone()), || message);
    }

    /// One entry dropped for `problem`; `message` writes it, called only if it is
    /// listed now.
    pub fn add_entry(
        &mut self,
        stream: usize,
        problem: EntryProblem,
        message: impl FnOnce() -> String,
    ) {
        self.count(ErrorKey::Entry { stream, problem }, message);
    }

    fn count(&mut self, key: ErrorKey, message: impl FnOnce() -> String) {
        if let Some(&i) = self.index.get(&key) {
            self.listed[i].1 += 1;
        } else if self.listed.len() < MAX_LISTED_ERRORS {
            // Two keys may still write the same text (a stream's message and an
            // entry's never do; two streams with one label text share a number).
            let text = message();
            match self.listed.iter().position(|(m, _)| *m == text) {
                Some(i) => self.listed[i].1 += 1,
                None => {
                    self.index.insert(key, self.listed.len());
                    self.listed.push((text, 1));
                }
            }
        } else {
            self.unlisted += 1;
        }
    }

    /// How many errors, listed or not.
    pub fn len(&self) -> usize {
        self.listed.iter().map(|(_, n)| n).sum::<usize>() + self.unlisted
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct messages listed, in the order first seen.
    pub fn messages(&self) -> impl Iterator<Item = &str> {
        self.listed.iter().map(|(m, _)| m.as_str())
    }

    /// Loki's answer: each distinct message once, prefixed with its count (`"3
    /// errors like: "`) when there is more than one error, joined by `"; "`; then
    /// how many were not listed.
    pub fn grouped(&self) -> String {
        let counted = self.listed.len() > 1 || self.unlisted > 0;
        let mut out: Vec<String> = self
            .listed
            .iter()
            .map(|(m, n)| {
                if counted || *n > 1 {
                    format!("{n} errors like: {m}")
                } else {
                    m.clone()
                }
            })
            .collect();
        if self.unlisted > 0 {
            out.push(format!("and {} more errors", self.unlisted));
        }
        out.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A protobuf writer for requests as Promtail builds them.
    fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
        crate::log::varint::put_uvarint(out, u64::from(number << 3 | 2));
        crate::log::varint::put_uvarint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
        crate::log::varint::put_uvarint(out, u64::from(number << 3));
        crate::log::varint::put_uvarint(out, v);
    }

    fn entry(ts_s: i64, nanos: i32, line: &str, metadata: &[(&str, &str)]) -> Vec<u8> {
        let mut ts = Vec::new();
        varint_field(&mut ts, 1, ts_s as u64);
        varint_field(&mut ts, 2, nanos as i64 as u64);
        let mut e = Vec::new();
        field(&mut e, 1, &ts);
        field(&mut e, 2, line.as_bytes());
        for (n, v) in metadata {
            let mut p = Vec::new();
            field(&mut p, 1, n.as_bytes());
            field(&mut p, 2, v.as_bytes());
            field(&mut e, 3, &p);
        }
        e
    }

    fn request(streams: &[(&str, Vec<Vec<u8>>)]) -> Vec<u8> {
        let mut req = Vec::new();
        for (labels, entries) in streams {
            let mut s = Vec::new();
            field(&mut s, 1, labels.as_bytes());
            for e in entries {
                field(&mut s, 2, e);
            }
            varint_field(&mut s, 3, 12345); // the hash Promtail leaves: skipped
            field(&mut req, 1, &s);
        }
        snap::raw::Encoder::new().compress_vec(&req).unwrap()
    }

    #[test]
    fn a_push_of_more_entries_than_memory_allows_is_refused_before_decoding() {
        // The probe's: a million empty entries are 94 KB of snappy protobuf.
        let empty = entry(0, 0, "", &[]);
        let at = |n: usize, meta: usize| {
            let mut e = vec![empty.clone(); n];
            e.push(entry(0, 0, "m", &vec![("k", "v"); meta]));
            request(&[("{a=\"b\"}", e)])
        };
        let refused = |body: &[u8], media: &str| {
            decompress(Some(media), None, body, 64 << 20)
                .map(|_| ())
                .err()
        };
        // `at(n, m)`: one stream, n + 1 entries, m metadata labels.
        let pb = "application/x-protobuf";
        assert_eq!(refused(&at(MAX_PUSH_ITEMS - 2, 0), pb), None);
        assert_eq!(
            refused(&at(MAX_PUSH_ITEMS - 2, 1), pb),
            Some(PushError::TooManyItems)
        );
        assert_eq!(
            refused(&at(MAX_PUSH_ITEMS - 1, 0), pb),
            Some(PushError::TooManyItems)
        );
        // Streams count too: empty ones are not free.
        let mut empty_streams = Vec::new();
        for _ in 0..=MAX_PUSH_ITEMS {
            field(&mut empty_streams, 1, b"");
        }
        let body = snap::raw::Encoder::new()
            .compress_vec(&empty_streams)
            .unwrap();
        assert_eq!(refused(&body, pb), Some(PushError::TooManyItems));
        // JSON: structural tokens; brackets, colons and commas inside strings do
        // not count.
        let json = |n: usize| {
            let values = vec![r#"["0","[:,]"]"#; n].join(",");
            format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[{values}]}}]}}"#)
        };
        // Three per entry, less the last comma; ten around them.
        let json_media = "application/json";
        let n = (MAX_PUSH_JSON_TOKENS - 10 + 1) / 3;
        assert_eq!(json_tokens(json(n).as_bytes()), 3 * n - 1 + 10);
        assert_eq!(refused(json(n).as_bytes(), json_media), None);
        assert_eq!(
            refused(json(n + 1).as_bytes(), json_media),
            Some(PushError::TooManyItems)
        );
        assert_eq!(json_tokens(br#"{"a\"[:,":["x"]}"#), 3);
        // Empty streams and stray values are counted as well.
        let streams = format!(
            r#"{{"streams":[{}]}}"#,
            vec!["{}"; MAX_PUSH_JSON_TOKENS / 2].join(",")
        );
        assert_eq!(
            refused(streams.as_bytes(), json_media),
            Some(PushError::TooManyItems)
        );
    }

    #[test]
    fn protobuf_requests_decode_with_timestamps_lines_and_metadata() {
        let body = request(&[
            (
                r#"{job="varlogs", filename="/var/log/syslog"}"#,
                vec![
                    entry(1_700_000_000, 5, "first", &[]),
                    entry(1_700_000_001, 0, "with metadata", &[("trace_id", "abc")]),
                ],
            ),
            ("{app=\"x\"}", vec![entry(1, 0, "", &[])]),
        ]);
        let (format, plain) =
            decompress(Some("application/x-protobuf"), None, &body, 1 << 20).unwrap();
        assert_eq!(format, PushFormat::Protobuf);
        let streams = decode(format, &plain).unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(
            streams[0].labels,
            r#"{job="varlogs", filename="/var/log/syslog"}"#
        );
        assert_eq!(streams[0].entries[0].ts_ns, 1_700_000_000_000_000_005);
        assert_eq!(streams[0].entries[1].line, "with metadata");
        assert_eq!(
            streams[0].entries[1].metadata,
            vec![(Cow::Borrowed("trace_id"), Cow::Borrowed("abc"))]
        );
        assert_eq!(streams[1].entries[0].line, "");
        // Also under gzip, and with any content type but JSON.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        let (f, again) = decompress(Some("text/plain"), Some("gzip"), &gz, 1 << 20).unwrap();
        assert_eq!(decode(f, &again).unwrap(), streams);
    }

    #[test]
    fn damaged_protobuf_is_an_error_never_a_panic() {
        let good = request(&[("{a=\"b\"}", vec![entry(1, 0, "line", &[("k", "v")])])]);
        let plain = snap::raw::Decoder::new().decompress_vec(&good).unwrap();
        for cut in 0..plain.len() {
            let _ = decode_protobuf(&plain[..cut]);
        }
        assert!(decode_protobuf(&plain[..plain.len() - 1]).is_err());
        // A line that is not UTF-8.
        let bad = request(&[(
            "{a=\"b\"}",
            vec![{
                let mut e = Vec::new();
                field(&mut e, 2, &[0xff, 0xfe]);
                e
            }],
        )]);
        let plain = snap::raw::Decoder::new().decompress_vec(&bad).unwrap();
        let err = decode_protobuf(&plain).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
        assert_eq!(
            decompress(
                Some("application/x-protobuf"),
                None,
                b"\xff\xff\xff\xff\xff",
                1 << 20
            )
            .unwrap_err(),
            PushError::Decompress("snappy: corrupt input".into())
        );
    }

    #[test]
    fn json_requests_decode_as_loki_reads_them() {
        let body = br#"{"streams":[{"stream":{"job":"a","app":"b\"q"},"values":[["1700000000000000001","hello"],["2","meta",{"z":"1","a":"2"}]]}]}"#;
        let (format, plain) =
            decompress(Some("application/json; charset=utf-8"), None, body, 1 << 20).unwrap();
        assert_eq!(format, PushFormat::Json);
        let streams = decode(format, &plain).unwrap();
        // The label object written as Loki writes it: sorted, Go-quoted.
        assert_eq!(streams[0].labels, r#"{app="b\"q", job="a"}"#);
        assert_eq!(streams[0].entries[0].ts_ns, 1_700_000_000_000_000_001);
        assert_eq!(
            streams[0].entries[1]
                .metadata
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
            [("a".to_string(), "2".to_string()), ("z".into(), "1".into())]
        );
        assert_eq!(
            parse_labels(&streams[0].labels).unwrap(),
            [
                ("app".to_string(), "b\"q".to_string()),
                ("job".into(), "a".into())
            ]
        );
        // Loki's refusals.
        let err = |b: &[u8]| decode_json(b).unwrap_err().to_string();
        assert!(
            err(br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#)
                .contains("error reading entry timestamp")
        );
        assert!(
            err(br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x",{},"y"]]}]}"#)
                .contains("array must have at least 2 and up to 3 values")
        );
        assert!(
            err(br#"{"streams":[{"stream":{"a":"b"},"values":[["x1","x"]]}]}"#)
                .contains("strconv.ParseInt")
        );
        assert!(err(b"{").contains("EOF"));
        // Unknown keys are ignored: nothing to store.
        assert!(decode_json(br#"{"strooms":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn encodings_and_types_are_refused_as_loki_refuses_them() {
        assert_eq!(
            decompress(None, None, b"{}", 100).unwrap_err().to_string(),
            "mime: no media type"
        );
        assert_eq!(
            decompress(Some("application/json"), Some("br"), b"{}", 100)
                .unwrap_err()
                .to_string(),
            "Content-Encoding \"br\" not supported"
        );
        // A gzip bomb stops at the limit.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 10 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 64 << 10);
        assert_eq!(
            decompress(Some("application/json"), Some("gzip"), &gz, 1 << 20).unwrap_err(),
            PushError::TooLarge(1 << 20)
        );
        assert!(matches!(
            decompress(Some("application/json"), Some("gzip"), b"not gzip", 1 << 20),
            Err(PushError::Decompress(_))
        ));
    }

    #[test]
    fn label_text_parses_as_prometheus_metric_syntax() {
        let ok = |t: &str| parse_labels(t).unwrap();
        assert_eq!(
            ok(r#" { job = "x" , app='y', z=`a\b`, empty="" , } "#),
            [
                ("app".to_string(), "y".to_string()),
                ("job".into(), "x".into()),
                ("z".into(), "a\\b".into())
            ]
        );
        assert_eq!(
            ok(r#"up{a="\x41\u00e9\101\n"}"#),
            [
                ("__name__".to_string(), "up".to_string()),
                ("a".into(), "Aé\u{41}\n".into())
            ]
        );
        assert!(ok("{}").is_empty());
        let err = |t: &str| parse_labels(t).unwrap_err();
        assert_eq!(
            err(r#"{a="b"."#),
            "1:7: parse error: unexpected character \'.\' in label matching, expected \",\" or \"}\""
        );
        assert!(err(r#"{a="b"#).contains("unterminated quoted string"));
        assert!(err(r#"{a=b}"#).contains("expected string"));
        assert!(err(r#"{1a="b"}"#).contains("unexpected character inside braces"));
        assert!(err(r#"{a="b"} x"#).contains("after the label set"));
        assert!(err("").starts_with("1:1: parse error"));
        assert!(err(r#"{a="\q"}"#).contains("unknown escape"));
    }

    fn stream<'a>(labels: &'a str, entries: Vec<PushEntry<'a>>) -> PushStream<'a> {
        PushStream {
            labels: Cow::Borrowed(labels),
            entries,
        }
    }

    fn line(ts_ns: i64, text: &str) -> PushEntry<'_> {
        PushEntry {
            ts_ns,
            line: Cow::Borrowed(text),
            metadata: Vec::new(),
        }
    }

    const NOW: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn checks_drop_what_loki_drops_and_keep_the_rest() {
        let limits = PushLimits {
            max_line_size: 10,
            ..PushLimits::default()
        };
        let many: String = label_text((0..16).map(|i| (format!("l{i:02}"), "v".to_string())));
        let long_name = format!("{{{}=\"v\"}}", "n".repeat(1025));
        let week = limits.reject_old_samples_max_age_ns;
        let streams = vec![
            stream(
                r#"{job="ok"}"#,
                vec![
                    line(NOW, "kept"),
                    line(NOW - week - 1_000_000_000, "too old"),
                    line(NOW + 11 * 60 * 1_000_000_000, "too new"),
                    line(NOW, "this line is too long"),
                ],
            ),
            stream(r#"{job="a" x}"#, vec![line(NOW, "x")]),
            stream(r#"{job=""}"#, vec![line(NOW, "x")]),
            stream(&many, vec![line(NOW, "x")]),
            stream(&long_name, vec![line(NOW, "x")]),
            stream(r#"{a="1", a="2"}"#, vec![line(NOW, "x")]),
            stream(r#"{job="empty"}"#, vec![]),
        ];
        let checked = check(streams, &limits, NOW);
        assert_eq!(checked.streams.len(), 1);
        assert_eq!(
            checked.streams[0].labels,
            Labels::from_pairs([("job", "ok")])
        );
        assert_eq!(checked.streams[0].entries.len(), 1);
        assert_eq!((checked.lines, checked.bytes), (1, 4));
        // The rate limit takes at least MIN_ENTRY_CHARGE for the 4-byte line.
        assert_eq!(checked.charged, MIN_ENTRY_CHARGE);
        assert_eq!(checked.errors.len(), 8, "{:#?}", checked.errors);
        let e: Vec<&str> = checked.errors.messages().collect();
        assert_eq!(
            e[0],
            "entry for stream '{job=\"ok\"}' has timestamp too old: 2023-11-07T22:13:19Z, oldest acceptable timestamp is: 2023-11-07T22:13:20Z"
        );
        assert_eq!(
            e[1],
            "entry for stream '{job=\"ok\"}' has timestamp too new: 2023-11-14T22:24:20Z"
        );
        assert_eq!(
            e[2],
            "Max entry size '10' bytes exceeded for stream '{job=\"ok\"}' while adding an entry with length '21' bytes"
        );
        assert!(
            e[3].starts_with("Error parsing labels '{job=\"a\" x}' with error: 1:10: parse error"),
            "{}",
            e[3]
        );
        assert_eq!(e[4], "error at least one label pair is required per stream");
        assert_eq!(
            e[5],
            format!("entry for stream '{many}' has 16 label names; limit 15")
        );
        assert!(e[6].contains("has label name too long"));
        assert_eq!(
            e[7],
            "stream '{a=\"1\", a=\"2\"}' has duplicate label name: 'a'"
        );
        // Cut instead of refused where the limits say so, on a character boundary.
        let cut = PushLimits {
            max_line_size: 4,
            max_line_size_truncate: true,
            ..PushLimits::default()
        };
        let checked = check(
            vec![stream("{a=\"b\"}", vec![line(NOW, "abcé")])],
            &cut,
            NOW,
        );
        assert_eq!(checked.streams[0].entries[0].line, "abc");
    }

    #[test]
    fn structured_metadata_limits() {
        let meta = |n: usize, size: usize| PushEntry {
            ts_ns: NOW,
            line: Cow::Borrowed("x"),
            metadata: (0..n)
                .map(|i| (Cow::Owned(format!("k{i}")), Cow::Owned("v".repeat(size))))
                .collect(),
        };
        let off = PushLimits {
            allow_structured_metadata: false,
            ..PushLimits::default()
        };
        let c = check(vec![stream("{a=\"b\"}", vec![meta(1, 1)])], &off, NOW);
        let e: Vec<&str> = c.errors.messages().collect();
        assert!(e[0].contains("includes structured metadata, but this feature is disallowed"));
        let c = check(
            vec![stream(
                "{a=\"b\"}",
                vec![meta(1, 70_000), meta(129, 1), meta(2, 1)],
            )],
            &PushLimits::default(),
            NOW,
        );
        let e: Vec<&str> = c.errors.messages().collect();
        assert!(
            e[0].contains("structured metadata too large: '70002' bytes, limit: '65536' bytes")
        );
        assert!(e[1].contains("too many structured metadata labels: '129', limit: '128'"));
        assert_eq!(c.lines, 1);
    }

    #[test]
    fn errors_are_grouped_as_loki_groups_them() {
        let e = |v: &[&str]| {
            let mut errors = PushErrors::default();
            for m in v {
                errors.add(m.to_string());
            }
            errors.grouped()
        };
        assert_eq!(e(&["a"]), "a");
        assert_eq!(e(&["a", "a"]), "2 errors like: a");
        assert_eq!(e(&["a", "b", "a"]), "2 errors like: a; 1 errors like: b");
        let many: Vec<String> = (0..150).map(|i| format!("e{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(e(&many).ends_with("; and 50 more errors"));
    }

    #[test]
    fn many_bad_entries_cost_counts_not_messages() {
        // The probe's push: 15 labels of 2,000 bytes (30 KB of label text), 6,000
        // entries too old. One message is written, once.
        let labels: String = (0..15)
            .map(|i| format!("l{i:02}=\"{}\"", "v".repeat(2000)))
            .collect::<Vec<_>>()
            .join(", ");
        let labels = format!("{{{labels}}}");
        let limits = PushLimits {
            max_label_value_length: 4096,
            ..PushLimits::default()
        };
        let entries: Vec<PushEntry> = (0..6000).map(|_| line(0, "")).collect();
        let checked = check(vec![stream(&labels, entries)], &limits, NOW);
        assert_eq!(checked.errors.len(), 6000);
        assert_eq!(checked.errors.messages().count(), 1);
        assert!(
            checked
                .errors
                .grouped()
                .starts_with("6000 errors like: entry for stream")
        );
        // Distinct messages past the list are counted; one already listed still
        // counts in its group.
        let entries: Vec<PushEntry> = (0..300)
            .map(|i| line(i * 1_000_000_000, ""))
            .chain((0..5).map(|_| line(0, "")))
            .collect();
        let checked = check(vec![stream("{a=\"b\"}", entries)], &limits, NOW);
        assert_eq!(checked.errors.len(), 305);
        assert_eq!(checked.errors.messages().count(), MAX_LISTED_ERRORS);
        let grouped = checked.errors.grouped();
        assert!(grouped.starts_with("6 errors like: entry for stream '{a=\"b\"}' has timestamp too old: 1970-01-01T00:00:00Z"), "{grouped}");
        assert!(grouped.ends_with("; and 200 more errors"), "{grouped}");
    }
}
