//! dstack compose hashes (DESIGN §3.5, docs/operating.md §3).
//!
//! What dstack hashes is the **bytes of `app-compose.json`** — the manifest that embeds the
//! docker-compose file as a string next to settings such as `allowed_envs` — not the
//! docker-compose file. The VMM writes the manifest it is given, byte for byte, into the CVM's
//! shared directory; the guest (`dstack-util`) takes `sha256` of that file, extends it into RTMR3
//! as the `compose-hash` runtime event, and the KMS reads it back from the verified event log and
//! hands it to the app's auth contract as `bytes32 composeHash` (the 32 digest bytes in order).
//! So [`compose_hash`] is `sha256(file bytes)`, whatever the formatting.
//!
//! dstack's SDKs (`get_compose_hash` in the Python and JS SDKs) instead hash a *canonical*
//! re-serialisation of the parsed manifest: keys sorted, no whitespace, non-ASCII as UTF-8. That
//! equals the bytes hash only when the file already is in that form. [`canonical_json`] produces
//! those bytes (as `dstack-sdk` 0.5.4's `get_compose_hash(doc)` without `normalize`), so a
//! manifest written in canonical form has one hash for every tool. [`build_app_compose`] writes
//! one from a docker-compose file.
//!
//! Parsing is our own strict JSON reader, so the canonical form depends on nothing a JSON
//! library may change: duplicate keys, a byte-order mark, non-integer numbers in canonical form
//! (Python and JavaScript print them differently) and anything that is not RFC 8259 JSON are
//! refused with a [`ComposeError`] that says where.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use alloy_primitives::B256;
use sha2::{Digest, Sha256};

/// Deepest nesting accepted (a manifest is two or three levels deep).
pub const MAX_DEPTH: usize = 64;

/// Why a document is not an app-compose manifest we can hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error(
        "starts with a UTF-8 byte-order mark: dstack's VMM refuses it (save the file without BOM)"
    )]
    ByteOrderMark,
    #[error("not JSON: {reason} at line {line}, column {column}")]
    Syntax {
        reason: &'static str,
        line: usize,
        column: usize,
    },
    #[error("nested deeper than {MAX_DEPTH} levels at line {line}, column {column}")]
    TooDeep { line: usize, column: usize },
    #[error(
        "duplicate key {key:?} at line {line}, column {column}: tools disagree on which value counts"
    )]
    DuplicateKey {
        key: String,
        line: usize,
        column: usize,
    },
    #[error("not an app-compose manifest: the document is {found}, not a JSON object")]
    NotAnObject { found: &'static str },
    #[error("not an app-compose manifest: field `{0}` is missing (dstack requires it)")]
    MissingField(&'static str),
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "number {lexeme} in `{field}` has no canonical form (dstack's SDKs print non-integers \
         differently): write it as an integer or a string"
    )]
    NonInteger { field: String, lexeme: String },
    #[error(
        "`{field}` has no canonical form: {reason}; dstack-sdk would hash it differently or fail"
    )]
    Ambiguous { field: String, reason: &'static str },
    #[error(
        "invalid environment variable name {0:?} (letters, digits and _, not starting with a digit)"
    )]
    BadEnvName(String),
}

/// A parsed JSON value; numbers keep their text so nothing is rounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in document order (keys are unique: the parser refuses duplicates).
    Object(Vec<(String, Json)>),
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A checked app-compose manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCompose {
    /// The whole document.
    pub doc: Json,
}

impl AppCompose {
    /// `runner` (`docker-compose`, `bash`, …).
    pub fn runner(&self) -> &str {
        match self.doc.get("runner") {
            Some(Json::String(s)) => s,
            _ => "",
        }
    }

    /// The embedded docker-compose file, if any.
    pub fn docker_compose_file(&self) -> Option<&str> {
        match self.doc.get("docker_compose_file") {
            Some(Json::String(s)) => Some(s),
            _ => None,
        }
    }

    /// `allowed_envs`: the encrypted variables dstack passes into the CVM (empty when absent).
    pub fn allowed_envs(&self) -> Vec<&str> {
        match self.doc.get("allowed_envs") {
            Some(Json::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Json::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Variables the embedded docker-compose file interpolates that `allowed_envs` does not list:
    /// dstack does not pass them, so compose sees them unset.
    pub fn missing_allowed_envs(&self) -> Vec<String> {
        let allowed: BTreeSet<&str> = self.allowed_envs().into_iter().collect();
        self.docker_compose_file()
            .map(referenced_env_vars)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !allowed.contains(v.as_str()))
            .collect()
    }
}

/// Boolean settings of dstack's `AppCompose`; any present must be a JSON boolean.
const BOOL_FIELDS: &[&str] = &[
    "public_logs",
    "public_sysinfo",
    "public_tcbinfo",
    "kms_enabled",
    "gateway_enabled",
    "tproxy_enabled",
    "local_key_provider_enabled",
    "no_instance_id",
    "secure_time",
];

/// Strict parse and shape check of an app-compose manifest: a JSON object with the fields
/// dstack's VMM requires (`manifest_version`, `name`, `runner`) of the right types.
pub fn parse(bytes: &[u8]) -> Result<AppCompose, ComposeError> {
    let doc = parse_json(bytes)?;
    let Json::Object(members) = &doc else {
        return Err(ComposeError::NotAnObject { found: doc.kind() });
    };
    let field = |name: &'static str| members.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let wrong = |name: &str, expected: &'static str, v: &Json| ComposeError::WrongType {
        field: name.to_string(),
        expected,
        found: v.kind(),
    };
    match field("manifest_version") {
        None => return Err(ComposeError::MissingField("manifest_version")),
        Some(Json::Number(_) | Json::String(_)) => {}
        Some(v) => return Err(wrong("manifest_version", "a number or a string", v)),
    }
    for name in ["name", "runner"] {
        match field(name) {
            None => return Err(ComposeError::MissingField(name)),
            Some(Json::String(_)) => {}
            Some(v) => return Err(wrong(name, "a string", v)),
        }
    }
    for name in [
        "docker_compose_file",
        "pre_launch_script",
        "key_provider_id",
    ] {
        match field(name) {
            None | Some(Json::String(_)) => {}
            Some(v) => return Err(wrong(name, "a string", v)),
        }
    }
    match field("allowed_envs") {
        None => {}
        Some(Json::Array(items)) => {
            if let Some(v) = items.iter().find(|v| !matches!(v, Json::String(_))) {
                return Err(wrong("allowed_envs[]", "a string", v));
            }
        }
        Some(v) => return Err(wrong("allowed_envs", "an array of strings", v)),
    }
    for name in BOOL_FIELDS {
        match field(name) {
            None | Some(Json::Bool(_)) => {}
            Some(v) => return Err(wrong(name, "true or false", v)),
        }
    }
    Ok(AppCompose { doc })
}

/// sha256 of `bytes`: the digest itself, unchecked.
pub fn sha256(bytes: &[u8]) -> B256 {
    B256::from(<[u8; 32]>::from(Sha256::digest(bytes)))
}

/// The compose hash dstack's guest measures and its KMS checks on chain: `sha256` of the file's
/// bytes, after checking they are an app-compose manifest.
pub fn compose_hash(bytes: &[u8]) -> Result<B256, ComposeError> {
    parse(bytes)?;
    Ok(sha256(bytes))
}

/// The canonical bytes of a manifest: what `dstack-sdk`'s `get_compose_hash` hashes.
pub fn canonical_json(bytes: &[u8]) -> Result<String, ComposeError> {
    let app = parse(bytes)?;
    canonical_of(&app.doc)
}

/// sha256 of [`canonical_json`]: `dstack-sdk`'s `get_compose_hash(doc)`.
pub fn canonical_hash(bytes: &[u8]) -> Result<B256, ComposeError> {
    Ok(sha256(canonical_json(bytes)?.as_bytes()))
}

/// Whether the file already is in canonical form (then every tool agrees on its hash).
pub fn is_canonical(bytes: &[u8]) -> Result<bool, ComposeError> {
    Ok(canonical_json(bytes)?.as_bytes() == bytes)
}

/// The SDK's view of the document: top-level nulls dropped (its `to_dict` skips `None`), nulls
/// inside `docker_config` dropped (likewise), keys sorted everywhere, compact, UTF-8.
fn canonical_of(doc: &Json) -> Result<String, ComposeError> {
    let Json::Object(members) = doc else {
        return Err(ComposeError::NotAnObject { found: doc.kind() });
    };
    let mut top: Vec<(String, Json)> = Vec::with_capacity(members.len());
    for (k, v) in members {
        if k.starts_with('_') {
            return Err(ComposeError::Ambiguous {
                field: k.clone(),
                reason: "dstack-sdk leaves keys starting with `_` out of its hash",
            });
        }
        if k == "to_dict" || k == "from_dict" {
            return Err(ComposeError::Ambiguous {
                field: k.clone(),
                reason: "the name of a dstack-sdk method",
            });
        }
        match (k.as_str(), v) {
            (_, Json::Null) => {}
            ("docker_config", Json::Object(m)) => {
                let kept = m
                    .iter()
                    .filter(|(_, v)| *v != Json::Null)
                    .cloned()
                    .collect();
                top.push((k.clone(), Json::Object(kept)));
            }
            ("docker_config", other) => {
                return Err(ComposeError::WrongType {
                    field: k.clone(),
                    expected: "an object",
                    found: other.kind(),
                });
            }
            ("requirements", Json::Object(m)) if m.iter().any(|(_, v)| *v == Json::Null) => {
                return Err(ComposeError::Ambiguous {
                    field: k.clone(),
                    reason: "a null member (dstack-sdk releases disagree on keeping it)",
                });
            }
            _ => top.push((k.clone(), v.clone())),
        }
    }
    let mut out = String::new();
    write_canonical(&mut out, &Json::Object(top), "")?;
    Ok(out)
}

fn write_canonical(out: &mut String, v: &Json, path: &str) -> Result<(), ComposeError> {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(lexeme) => {
            if lexeme.contains(['.', 'e', 'E']) {
                return Err(ComposeError::NonInteger {
                    field: path.to_string(),
                    lexeme: lexeme.clone(),
                });
            }
            // A Python int prints without sign when zero.
            out.push_str(if lexeme == "-0" { "0" } else { lexeme });
        }
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item, &format!("{path}[{i}]"))?;
            }
            out.push(']');
        }
        Json::Object(members) => {
            let mut sorted: Vec<&(String, Json)> = members.iter().collect();
            // Code-point order, as Python's sorted() on str (UTF-8 byte order is the same).
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                write_canonical(out, item, &sub)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A string as Python's `json.dumps(…, ensure_ascii=False)` writes it.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Settings of a manifest built from a docker-compose file ([`build_app_compose`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppComposeSpec {
    pub name: String,
    /// Encrypted variables dstack may pass in; written sorted and deduplicated.
    pub allowed_envs: Vec<String>,
    pub kms_enabled: bool,
    pub gateway_enabled: bool,
    pub public_logs: bool,
    pub public_sysinfo: bool,
    pub public_tcbinfo: bool,
    pub secure_time: bool,
}

impl AppComposeSpec {
    /// An AttestMesh node's defaults: KMS keys, the gateway (WireGuard over TLS), the variables
    /// the compose interpolates, logs private, system and TCB info public.
    pub fn node(name: &str, docker_compose_yaml: &str) -> Self {
        AppComposeSpec {
            name: name.to_string(),
            allowed_envs: referenced_env_vars(docker_compose_yaml),
            kms_enabled: true,
            gateway_enabled: true,
            public_logs: false,
            public_sysinfo: true,
            public_tcbinfo: true,
            secure_time: false,
        }
    }
}

/// A canonical `app-compose.json` (manifest version 2, `docker-compose` runner) embedding
/// `docker_compose_yaml` verbatim. Its bytes hash is its canonical hash.
pub fn build_app_compose(
    docker_compose_yaml: &str,
    spec: &AppComposeSpec,
) -> Result<String, ComposeError> {
    let mut envs = BTreeSet::new();
    for e in &spec.allowed_envs {
        if !is_env_name(e) {
            return Err(ComposeError::BadEnvName(e.clone()));
        }
        envs.insert(e.clone());
    }
    let b = Json::Bool;
    let s = |v: &str| Json::String(v.to_string());
    let doc = Json::Object(vec![
        ("manifest_version".into(), Json::Number("2".into())),
        ("name".into(), s(&spec.name)),
        ("runner".into(), s("docker-compose")),
        ("docker_compose_file".into(), s(docker_compose_yaml)),
        ("kms_enabled".into(), b(spec.kms_enabled)),
        (
            "key_provider".into(),
            s(if spec.kms_enabled { "kms" } else { "none" }),
        ),
        ("key_provider_id".into(), s("")),
        ("gateway_enabled".into(), b(spec.gateway_enabled)),
        ("local_key_provider_enabled".into(), b(false)),
        ("public_logs".into(), b(spec.public_logs)),
        ("public_sysinfo".into(), b(spec.public_sysinfo)),
        ("public_tcbinfo".into(), b(spec.public_tcbinfo)),
        (
            "allowed_envs".into(),
            Json::Array(envs.into_iter().map(Json::String).collect()),
        ),
        ("no_instance_id".into(), b(false)),
        ("secure_time".into(), b(spec.secure_time)),
    ]);
    canonical_of(&doc)
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Variables a docker-compose file interpolates (`${NAME}`, `${NAME:-default}`, `$NAME`; `$$`
/// is a literal dollar), sorted and deduplicated.
pub fn referenced_env_vars(yaml: &str) -> Vec<String> {
    let b = yaml.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let start = i + 2;
                let end = ident_end(b, start);
                if end > start {
                    found.insert(yaml[start..end].to_string());
                }
                i = end.max(start);
            }
            Some(_) => {
                let start = i + 1;
                let end = ident_end(b, start);
                if end > start {
                    found.insert(yaml[start..end].to_string());
                }
                i = end.max(start);
            }
            None => i += 1,
        }
    }
    found.into_iter().collect()
}

fn ident_end(b: &[u8], start: usize) -> usize {
    let mut j = start;
    if matches!(b.get(j), Some(c) if *c == b'_' || c.is_ascii_alphabetic()) {
        j += 1;
        while matches!(b.get(j), Some(c) if *c == b'_' || c.is_ascii_alphanumeric()) {
            j += 1;
        }
    }
    j
}

// ---- strict JSON (RFC 8259) ----

/// Parse one JSON document (surrounding whitespace allowed, nothing else).
pub fn parse_json(bytes: &[u8]) -> Result<Json, ComposeError> {
    if bytes.starts_with(&[0xef, 0xbb, 0xbf]) {
        return Err(ComposeError::ByteOrderMark);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ComposeError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut p = Parser { s: text, pos: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text after the document"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn at(&self) -> (usize, usize) {
        let before = &self.s[..self.pos];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn err(&self, reason: &'static str) -> ComposeError {
        let (line, column) = self.at();
        ComposeError::Syntax {
            reason,
            line,
            column,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ComposeError> {
        if depth > MAX_DEPTH {
            let (line, column) = self.at();
            return Err(ComposeError::TooDeep { line, column });
        }
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(_) => Err(self.err("expected a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ComposeError> {
        self.pos += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        let mut seen = BTreeSet::new();
        self.ws();
        if self.eat("}") {
            return Ok(Json::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let (line, column) = self.at();
            let key = self.string()?;
            if !seen.insert(key.clone()) {
                return Err(ComposeError::DuplicateKey { key, line, column });
            }
            self.ws();
            if !self.eat(":") {
                return Err(self.err("expected `:`"));
            }
            self.ws();
            let v = self.value(depth + 1)?;
            members.push((key, v));
            self.ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                return Ok(Json::Object(members));
            }
            return Err(self.err("expected `,` or `}`"));
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, ComposeError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat("]") {
            return Ok(Json::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("]") {
                return Ok(Json::Array(items));
            }
            return Err(self.err("expected `,` or `]`"));
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, ComposeError> {
        let start = self.pos;
        self.eat("-");
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("expected a digit")),
        }
        if self.eat(".") && self.digits() == 0 {
            return Err(self.err("expected a digit after `.`"));
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("expected a digit in the exponent"));
            }
        }
        Ok(Json::Number(self.s[start..self.pos].to_string()))
    }

    fn hex4(&mut self) -> Result<u32, ComposeError> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("expected four hex digits after \\u"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ComposeError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Err(self.err("unterminated string"));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\\' => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi) {
                                if !self.eat("\\u") {
                                    return Err(self.err("lone surrogate in \\u escape"));
                                }
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("lone surrogate in \\u escape"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else if (0xdc00..0xe000).contains(&hi) {
                                return Err(self.err("lone surrogate in \\u escape"));
                            } else {
                                hi
                            };
                            let ch =
                                char::from_u32(cp).ok_or_else(|| self.err("bad \\u escape"))?;
                            out.push(ch);
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("unknown escape"));
                        }
                    }
                }
                c if (c as u32) < 0x20 => return Err(self.err("control character in a string")),
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// dstack's own sample manifest: `sdk/simulator/app-compose.json` of Dstack-TEE/dstack
    /// (Apache-2.0), unmodified; provenance in `testdata/README.md`.
    const SIMULATOR: &[u8] = include_bytes!("../testdata/dstack-simulator-app-compose.json");
    /// sha256 of the file's bytes, as dstack's VMM (`hex_sha256(compose_file)`) and guest
    /// (`sha256_file(app-compose.json)`) compute it.
    const SIMULATOR_BYTES_HASH: &str =
        "0x65b4e574f16973956908b6359920593c3b7d9f36f38e81a47f996a0c0d5435bb";
    /// `dstack_sdk.get_compose_hash(json.load(f))`, dstack-sdk 0.5.4 from PyPI.
    const SIMULATOR_SDK_HASH: &str =
        "0x84d4e7a031ef7d048d1492ca00b754c32513934e53f62b2dcf84b3e440656f61";

    fn minimal() -> &'static str {
        r#"{"manifest_version":2,"name":"n","runner":"docker-compose"}"#
    }

    #[test]
    fn simulator_sample_bytes_hash_and_sdk_hash() {
        assert_eq!(
            compose_hash(SIMULATOR).unwrap().to_string(),
            SIMULATOR_BYTES_HASH
        );
        assert_eq!(
            canonical_hash(SIMULATOR).unwrap().to_string(),
            SIMULATOR_SDK_HASH
        );
        assert!(!is_canonical(SIMULATOR).unwrap());
        // Writing the canonical form makes the two agree.
        let c = canonical_json(SIMULATOR).unwrap();
        assert_eq!(
            compose_hash(c.as_bytes()).unwrap().to_string(),
            SIMULATOR_SDK_HASH
        );
        assert!(is_canonical(c.as_bytes()).unwrap());
    }

    #[test]
    fn bytes_hash_is_plain_sha256_and_formatting_matters() {
        let a = minimal();
        let b = "{ \"manifest_version\": 2, \"name\": \"n\", \"runner\": \"docker-compose\" }\n";
        assert_eq!(compose_hash(a.as_bytes()).unwrap(), sha256(a.as_bytes()));
        assert_ne!(
            compose_hash(a.as_bytes()).unwrap(),
            compose_hash(b.as_bytes()).unwrap()
        );
        assert_eq!(
            canonical_hash(a.as_bytes()).unwrap(),
            canonical_hash(b.as_bytes()).unwrap()
        );
        // sha256("") as a known answer for the digest itself.
        assert_eq!(
            sha256(b"").to_string(),
            "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn canonical_form_matches_the_sdk_rules() {
        let doc = r#"{"runner":"docker-compose","name":"é\u00e9\n\"\\\/\u0001\u007f😀\ud83d\ude00",
            "manifest_version":-0,"z":{"b":[1,{"y":null,"x":true}],"a":{}},"gone":null,
            "docker_config":{"registry":null,"username":"u"},"allowed_envs":[]}"#;
        let c = canonical_json(doc.as_bytes()).unwrap();
        assert_eq!(
            c,
            "{\"allowed_envs\":[],\"docker_config\":{\"username\":\"u\"},\"manifest_version\":0,\
             \"name\":\"éé\\n\\\"\\\\/\\u0001\u{7f}😀😀\",\"runner\":\"docker-compose\",\
             \"z\":{\"a\":{},\"b\":[1,{\"x\":true,\"y\":null}]}}"
        );
    }

    #[test]
    fn keys_sort_by_code_point() {
        let doc =
            r#"{"manifest_version":2,"name":"n","runner":"r","é":1,"z":2,"Z":3,"😀":4,"ｚ":5}"#;
        let c = canonical_json(doc.as_bytes()).unwrap();
        assert_eq!(
            c,
            r#"{"Z":3,"manifest_version":2,"name":"n","runner":"r","z":2,"é":1,"ｚ":5,"😀":4}"#
        );
    }

    #[test]
    fn bad_input_is_refused_with_reasons() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "unexpected end of input"),
            (b"not json", "expected a value"),
            (b"[1,2]", "is an array, not a JSON object"),
            (b"\"s\"", "is a string"),
            (
                b"{\"manifest_version\":2,\"name\":\"n\"}",
                "`runner` is missing",
            ),
            (
                b"{\"name\":\"n\",\"runner\":\"r\"}",
                "`manifest_version` is missing",
            ),
            (
                b"{\"manifest_version\":2,\"name\":1,\"runner\":\"r\"}",
                "`name` must be a string",
            ),
            (b"{\"a\":1,\"a\":2}", "duplicate key \"a\""),
            (b"\xef\xbb\xbf{}", "byte-order mark"),
            (b"{\"a\":\"\xff\"}", "not UTF-8"),
            (b"{\"a\":NaN}", "expected a value"),
            (b"{\"a\":01}", "expected `,` or `}`"),
            (b"{\"a\":1.}", "digit after `.`"),
            (b"{\"a\":\"\\ud800\"}", "lone surrogate"),
            (b"{\"a\":\"\\x\"}", "unknown escape"),
            (b"{\"a\":\"\x01\"}", "control character"),
            (b"{} {}", "after the document"),
            (b"{\"a\":1,}", "expected a string key"),
        ];
        for (input, want) in cases {
            let e = compose_hash(input).unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(input)
            );
        }
        let m = r#"{"manifest_version":2,"name":"n","runner":"r","public_logs":"yes"}"#;
        assert!(
            compose_hash(m.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("public_logs")
        );
        let m = r#"{"manifest_version":2,"name":"n","runner":"r","allowed_envs":[1]}"#;
        assert!(compose_hash(m.as_bytes()).is_err());
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = compose_hash(b"{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!(
            e,
            ComposeError::Syntax {
                reason: "expected a value",
                line: 2,
                column: 8
            }
        );
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert!(matches!(
            parse_json(deep.as_bytes()),
            Err(ComposeError::TooDeep { .. })
        ));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_json(ok.as_bytes()).is_ok());
    }

    #[test]
    fn canonical_refuses_what_has_no_single_form() {
        let base = r#"{"manifest_version":2,"name":"n","runner":"r","#;
        for (tail, want) in [
            (r#""x":1.5}"#, "no canonical form"),
            (r#""x":{"y":[1e3]}}"#, "x.y[0]"),
            (r#""_x":1}"#, "`_`"),
            (r#""to_dict":1}"#, "method"),
            (r#""docker_config":"s"}"#, "must be an object"),
            (r#""requirements":{"os_version":null}}"#, "null member"),
        ] {
            let doc = format!("{base}{tail}");
            // The bytes hash is still defined: dstack itself does not care.
            assert!(compose_hash(doc.as_bytes()).is_ok(), "{doc}");
            let e = canonical_json(doc.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{doc}: {e}");
        }
        // Big integers are exact (Python ints are unbounded).
        let doc = format!("{base}\"x\":123456789012345678901234567890}}");
        assert!(
            canonical_json(doc.as_bytes())
                .unwrap()
                .contains("123456789012345678901234567890")
        );
    }

    #[test]
    fn env_references_are_found() {
        let yaml = "a: ${RPC_URL}\nb: ${CONFIRMATIONS:-0}\nc: $CHAIN_ID\nd: $$NOT\ne: ${X-y} $ {\nf: $1 ${";
        assert_eq!(
            referenced_env_vars(yaml),
            ["CHAIN_ID", "CONFIRMATIONS", "RPC_URL", "X"]
        );
    }

    #[test]
    fn built_manifest_is_canonical_and_lists_its_variables() {
        let yaml = "services:\n  agent:\n    environment:\n      RPC_URL: ${RPC_URL}\n      CHAIN_ID: ${CHAIN_ID}\n";
        let spec = AppComposeSpec::node("attestmesh-node", yaml);
        let json = build_app_compose(yaml, &spec).unwrap();
        assert!(is_canonical(json.as_bytes()).unwrap());
        let app = parse(json.as_bytes()).unwrap();
        assert_eq!(app.allowed_envs(), ["CHAIN_ID", "RPC_URL"]);
        assert_eq!(app.docker_compose_file(), Some(yaml));
        assert_eq!(app.runner(), "docker-compose");
        assert!(app.missing_allowed_envs().is_empty());
        assert_eq!(app.doc.get("kms_enabled"), Some(&Json::Bool(true)));
        assert_eq!(app.doc.get("gateway_enabled"), Some(&Json::Bool(true)));

        let mut bad = spec.clone();
        bad.allowed_envs.push("1X".into());
        assert_eq!(
            build_app_compose(yaml, &bad),
            Err(ComposeError::BadEnvName("1X".into()))
        );
        let mut narrow = spec;
        narrow.allowed_envs = vec!["RPC_URL".into()];
        let app = parse(build_app_compose(yaml, &narrow).unwrap().as_bytes()).unwrap();
        assert_eq!(app.missing_allowed_envs(), ["CHAIN_ID"]);
    }

    /// Fuzz (DESIGN §15.7): mutated manifests and arbitrary bytes never panic; whatever parses
    /// has a canonical form that is a fixed point and hashes as its bytes.
    mod fuzz {
        use super::*;
        use attestmesh_fuzzkit::{config, edits, mutate};
        use proptest::prelude::*;

        fn check(bytes: &[u8]) {
            let _ = compose_hash(bytes);
            if let Ok(c) = canonical_json(bytes) {
                assert_eq!(canonical_json(c.as_bytes()).unwrap(), c);
                assert_eq!(
                    compose_hash(c.as_bytes()).unwrap(),
                    canonical_hash(bytes).unwrap()
                );
            }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn mutated_simulator_manifest(e in edits()) {
                check(&mutate(SIMULATOR, &e));
            }

            #[test]
            fn mutated_canonical_manifest(e in edits()) {
                let c = canonical_json(SIMULATOR).unwrap();
                check(&mutate(c.as_bytes(), &e));
            }

            #[test]
            fn arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
                check(&b);
            }
        }
    }
}
