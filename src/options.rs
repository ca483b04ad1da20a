//! Role options: the closed vocabulary of types a role manifest declares its
//! vars with, and the one checker that holds a host's values to them.
//!
//! A role says what each of its vars is (`type`, `default` or `required`,
//! `description`, `example`, `secret`); the core knows the types, never the
//! roles. Checking a value also normalises it: an object gains its fields'
//! defaults, so templates always see every declared field (`null` when
//! optional and unset), the way a typed struct would.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::problem::did_you_mean;
use crate::values::matrix::{Duration, MatrixId};
use crate::values::{DnsName, Port, Size, describe_value};

/// What one var (or one field of an object var) must be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    #[serde(rename = "type")]
    pub kind: OptionType,
    /// What it does, for the generated reference.
    #[serde(default)]
    pub description: Option<String>,
    /// The value when a host leaves it out. `default: null` is `optional`.
    #[serde(default, deserialize_with = "present")]
    pub default: Option<Value>,
    /// A host must set it: there is no value that is right for every host.
    #[serde(default)]
    pub required: bool,
    /// Unset is allowed: `null` (and, for strings, `""`) means "off".
    #[serde(default)]
    pub optional: bool,
    /// A value worth copying, for the reference.
    #[serde(default)]
    pub example: Option<Value>,
    /// The value for a homeserver that shares its machine with others
    /// (`machine:` in hosts.yaml), in place of `default`: its own path or
    /// name, with `{{ customer }}` (its short name) and
    /// `{{ customer_address }}` (its loopback address) filled in.
    #[serde(default)]
    pub per_customer: Option<Value>,
    /// The value is a secret: it never prints, in errors or plans.
    #[serde(default)]
    pub secret: bool,
    /// A `string` that may span lines. Only for values written through a
    /// filter that escapes line breaks (`tojson`, `html_markup`).
    #[serde(default)]
    pub multiline: bool,
    /// For `int` (and `size`, in bytes): the smallest and largest values.
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// For `enum`: the allowed values.
    #[serde(default)]
    pub values: Vec<String>,
    /// For `uri`: the allowed schemes, like `mailto` and `https`.
    #[serde(default)]
    pub schemes: Vec<String>,
    /// For `list` and `map`: what each item (or value) is.
    #[serde(default)]
    pub items: Option<Box<OptionSpec>>,
    /// For `object`: its fields.
    #[serde(default)]
    pub fields: BTreeMap<String, OptionSpec>,
    /// For `one_of`: the alternatives, tried by the value's shape.
    #[serde(default)]
    pub one_of: Vec<OptionSpec>,
    /// For a `list` of objects: a field no two items may share.
    #[serde(default)]
    pub unique_by: Option<String>,
    /// For `string`: a regular expression the whole value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For `pattern`: what it allows, in words, for the error message
    /// ("letters, digits and . _ ~ -").
    #[serde(default)]
    pub pattern_means: Option<String>,
    /// `pattern`, compiled once (anchored at both ends).
    #[serde(skip)]
    compiled_pattern: std::sync::OnceLock<Option<regex::Regex>>,
}

/// `default: null` is a default (null), unlike no `default` at all.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// The closed vocabulary of option types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionType {
    Bool,
    /// An integer, within `min` and `max` when given.
    Int,
    /// 1 to 65535.
    Port,
    /// Bytes, or a number with K, M, G or T (powers of 1024).
    Size,
    /// Milliseconds, or a number with s, m, h, d, w or y.
    Duration,
    /// A lowercase DNS name.
    DnsName,
    /// `@localpart:server.name`.
    MatrixId,
    /// `https://HOST[/PATH]`, without the characters config formats give
    /// meaning to (spaces, quotes, `$`, `;`, braces).
    HttpsUrl,
    /// A URI of one of `schemes`.
    Uri,
    /// `local@domain`.
    Email,
    /// An IPv4 or IPv6 address.
    Ip,
    /// An address and prefix length, like `10.0.0.0/8`.
    Cidr,
    /// An absolute, normalised path (no `//`, `.` or `..`).
    Path,
    /// `type/subtype`.
    MimeType,
    /// Text on one line (unless `multiline`).
    String,
    /// One of `values`.
    Enum,
    /// A list of `items`.
    List,
    /// A map from names to `items`.
    Map,
    /// A map with the declared `fields` only.
    Object,
    /// One of several types (`one_of`).
    OneOf,
    /// Any YAML, passed through untyped: only for values a template writes
    /// whole as JSON or YAML (`tojson`), where nothing can break out.
    Any,
}

/// One value that is not what its option says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Key path, list indexes appended to their key: `oidc_providers[0]`, `idp_id`.
    pub path: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl OptionSpec {
    /// A declaration that cannot work, said once when the roles load.
    pub fn declaration_problems(&self, name: &str) -> Vec<String> {
        let mut problems = Vec::new();
        self.collect_declaration_problems(name, true, &mut problems);
        problems
    }

    fn collect_declaration_problems(&self, name: &str, top: bool, out: &mut Vec<String>) {
        let kind = self.type_name();
        let kind = kind.split(' ').next().unwrap_or_default();
        let before = out.len();
        let needs = |what: &str, has: bool, out: &mut Vec<String>| {
            if !has {
                out.push(format!("option `{name}`: type `{kind}` needs `{what}`"));
            }
        };
        match self.kind {
            OptionType::Enum => needs("values", !self.values.is_empty(), out),
            OptionType::Uri => needs("schemes", !self.schemes.is_empty(), out),
            OptionType::List | OptionType::Map => needs("items", self.items.is_some(), out),
            OptionType::OneOf => needs("one_of", self.one_of.len() >= 2, out),
            _ => {}
        }
        if let Some(pattern) = &self.pattern {
            if self.kind != OptionType::String {
                out.push(format!(
                    "option `{name}`: `pattern` is for type `string`, not `{kind}`"
                ));
            } else if self.regex().is_none() {
                let error = regex::Regex::new(pattern).err().map(|e| e.to_string());
                out.push(format!(
                    "option `{name}`: `pattern` is not a regular expression: {}",
                    error.unwrap_or_default().lines().last().unwrap_or_default()
                ));
            }
        }
        if top && self.default.is_none() && !self.required && !self.optional {
            out.push(format!(
                "option `{name}` needs a `default`, or `required: true`, or `optional: true`"
            ));
        }
        if self.required && self.default.is_some() {
            out.push(format!(
                "option `{name}` is `required` and has a `default`: one or the other"
            ));
        }
        // A default is only checked against a declaration that works.
        let declared = out.len() == before;
        if let Some(default) = self
            .default
            .as_ref()
            .filter(|value| declared && !value.is_null())
        {
            let mut findings = Vec::new();
            self.check(&mut vec![name.to_string()], default, &mut findings);
            for finding in findings {
                out.push(format!(
                    "option `{}`: its default: {}",
                    finding.path.join("."),
                    finding.message
                ));
            }
        }
        if let Some(items) = &self.items {
            items.collect_declaration_problems(&format!("{name}[]"), false, out);
        }
        for (field, spec) in &self.fields {
            spec.collect_declaration_problems(&format!("{name}.{field}"), false, out);
        }
        for (index, spec) in self.one_of.iter().enumerate() {
            spec.collect_declaration_problems(&format!("{name}.one_of[{index}]"), false, out);
        }
    }

    /// The compiled `pattern`, matching whole values only.
    fn regex(&self) -> Option<&regex::Regex> {
        self.compiled_pattern
            .get_or_init(|| {
                let pattern = self.pattern.as_ref()?;
                regex::Regex::new(&format!("^(?:{pattern})$")).ok()
            })
            .as_ref()
    }

    /// The value a host gets when it leaves this option out, or `None`
    /// when it must set it.
    pub fn absent_value(&self) -> Option<Value> {
        match (&self.default, self.kind) {
            (Some(default), OptionType::Object) if !default.is_null() => {
                Some(self.normalise(default))
            }
            (Some(default), _) => Some(default.clone()),
            (None, _) if self.optional => Some(Value::Null),
            (None, OptionType::Object) if !self.required => Some(self.normalise(&empty_map())),
            (None, _) => None,
        }
    }

    /// `value` with every object's unset fields filled in from their
    /// defaults. Call on checked values only.
    pub fn normalise(&self, value: &Value) -> Value {
        match (self.kind, value) {
            (OptionType::Object, Value::Mapping(map)) => {
                let mut out = Mapping::new();
                for (field, spec) in &self.fields {
                    match map.get(field.as_str()) {
                        Some(inner) => {
                            out.insert(field.as_str().into(), spec.normalise(inner));
                        }
                        None => {
                            if let Some(absent) = spec.absent_value() {
                                out.insert(field.as_str().into(), absent);
                            }
                        }
                    }
                }
                Value::Mapping(out)
            }
            (OptionType::List, Value::Sequence(items)) => {
                let spec = self.items.as_deref();
                Value::Sequence(
                    items
                        .iter()
                        .map(|item| spec.map_or_else(|| item.clone(), |spec| spec.normalise(item)))
                        .collect(),
                )
            }
            (OptionType::Map, Value::Mapping(map)) => {
                let spec = self.items.as_deref();
                Value::Mapping(
                    map.iter()
                        .map(|(key, inner)| {
                            let inner =
                                spec.map_or_else(|| inner.clone(), |spec| spec.normalise(inner));
                            (key.clone(), inner)
                        })
                        .collect(),
                )
            }
            (OptionType::OneOf, value) => match self.alternative_for(value) {
                Some(spec) => spec.normalise(value),
                None => value.clone(),
            },
            // A size reaches templates as written, a number as its digits.
            (OptionType::Size, Value::Number(number)) => Value::String(number.to_string()),
            _ => value.clone(),
        }
    }

    /// Every way `value` (at `path`) is not of this option's type.
    pub fn check(&self, path: &mut Vec<String>, value: &Value, found: &mut Vec<Finding>) {
        macro_rules! refuse {
            ($message:expr, $hint:expr $(,)?) => {
                found.push(Finding {
                    path: path.clone(),
                    message: $message,
                    hint: $hint,
                })
            };
        }
        if value.is_null() {
            if !self.optional && !matches!(self.kind, OptionType::Any) {
                refuse!(
                    format!("expected {}, found nothing (null)", self.expected()),
                    Some("remove the key to take the default, or give a value".into()),
                );
            }
            return;
        }
        if self.optional && value.as_str() == Some("") {
            return;
        }
        let secret = self.secret;
        let shown = |value: &Value| {
            if secret {
                "a value (not shown: it is a secret)".to_string()
            } else {
                describe_value(value)
            }
        };
        // The parsers of the older types quote the value in their messages.
        let parses = |value: &Value| -> Result<(), String> {
            let result = match self.kind {
                OptionType::Port => typed::<Port>(value).map(drop),
                OptionType::Size => typed::<Size>(value).map(drop),
                OptionType::Duration => typed::<Duration>(value).map(drop),
                OptionType::DnsName => typed::<DnsName>(value).map(drop),
                OptionType::MatrixId => typed::<MatrixId>(value).map(drop),
                _ => Ok(()),
            };
            result.map_err(|message| {
                if secret {
                    format!(
                        "expected {}, found a value (not shown: it is a secret)",
                        self.expected()
                    )
                } else {
                    message
                }
            })
        };
        if let Err(message) = parses(value) {
            refuse!(message, None);
            return;
        }
        match self.kind {
            OptionType::Bool => {
                if !value.is_bool() {
                    refuse!(
                        format!("expected `true` or `false`, found {}", shown(value)),
                        None,
                    );
                }
            }
            OptionType::Int => match value.as_i64() {
                None => refuse!(format!("expected an integer, found {}", shown(value)), None,),
                Some(number) => {
                    if let Some(message) = self.out_of_bounds(number, &number.to_string()) {
                        refuse!(message, None);
                    }
                }
            },
            OptionType::Port => {
                if let Err(message) = typed::<Port>(value) {
                    refuse!(message, None);
                }
            }
            OptionType::Size => match typed::<Size>(value) {
                Err(message) => refuse!(message, None),
                Ok(size) => {
                    let bytes = i64::try_from(size.bytes).unwrap_or(i64::MAX);
                    if self.out_of_bounds(bytes, &size.text).is_some() {
                        let bounds = match (self.min, self.max) {
                            (Some(min), Some(max)) => format!("from {min} to {max} bytes"),
                            (Some(1), None) => "of more than 0 bytes".to_string(),
                            (Some(min), None) => format!("of at least {min} bytes"),
                            (_, max) => format!("of at most {} bytes", max.unwrap_or_default()),
                        };
                        refuse!(
                            format!("expected a size {bounds}, found `{}`", size.text),
                            Some("write a size like `50M`".into())
                        );
                    }
                }
            },
            OptionType::Duration => match typed::<Duration>(value) {
                Err(message) => refuse!(message, None),
                Ok(duration) => {
                    if self.min.is_some_and(|min| min > 0) && duration.is_zero() {
                        refuse!(
                            "expected a duration longer than 0".into(),
                            Some("write a duration like `1h`".into()),
                        );
                    }
                }
            },
            OptionType::DnsName => {
                if let Err(message) = typed::<DnsName>(value) {
                    refuse!(message, None);
                }
            }
            OptionType::MatrixId => {
                if let Err(message) = typed::<MatrixId>(value) {
                    refuse!(message, None);
                }
            }
            OptionType::HttpsUrl => match value.as_str() {
                Some(text) if https_url(text) => {}
                _ => refuse!(
                    format!(
                        "expected an https:// URL (no spaces, quotes, `$`, `;` or braces), found {}",
                        shown(value)
                    ),
                    None,
                ),
            },
            OptionType::Uri => {
                let fits = value.as_str().is_some_and(|text| {
                    self.schemes.iter().any(|scheme| {
                        text.strip_prefix(scheme.as_str())
                            .and_then(|rest| rest.strip_prefix(':'))
                            .is_some_and(|rest| {
                                let rest = rest.trim_start_matches("//");
                                !rest.is_empty()
                                    && (scheme != "mailto" || rest.contains('@'))
                                    && !rest
                                        .chars()
                                        .any(|c| c.is_whitespace() || "\"'`$;{}<>\\".contains(c))
                            })
                    })
                });
                if !fits {
                    let schemes: Vec<String> = self
                        .schemes
                        .iter()
                        .map(|scheme| format!("`{scheme}:`"))
                        .collect();
                    refuse!(
                        format!(
                            "expected a {} URI, found {}",
                            schemes.join(" or "),
                            shown(value)
                        ),
                        Some(
                            "like `mailto:admin@example.com` or `https://example.com/contact`"
                                .into()
                        )
                        .filter(|_| { self.schemes.iter().any(|scheme| scheme == "mailto") }),
                    );
                }
            }
            OptionType::Email => match value.as_str() {
                Some(text) if email(text) => {}
                _ => refuse!(
                    format!(
                        "expected an email address like `admin@example.com`, found {}",
                        shown(value)
                    ),
                    None,
                ),
            },
            OptionType::Ip => {
                if value
                    .as_str()
                    .and_then(|text| text.parse::<std::net::IpAddr>().ok())
                    .is_none()
                {
                    refuse!(
                        format!(
                            "expected an IP address like `192.0.2.1` or `2001:db8::1`, found {}",
                            shown(value)
                        ),
                        None,
                    );
                }
            }
            OptionType::Cidr => {
                if !value.as_str().is_some_and(cidr) {
                    refuse!(
                        format!(
                            "expected an address range like `10.0.0.0/8` or `fd00::/8`, found {}",
                            shown(value)
                        ),
                        None,
                    );
                }
            }
            OptionType::Path => match value.as_str() {
                Some(text) if absolute_path(text) => {}
                Some(_) => refuse!(
                    format!(
                        "expected an absolute path without `//`, `.` or `..`, found {}",
                        shown(value)
                    ),
                    None,
                ),
                None => refuse!(
                    format!("expected an absolute path, found {}", shown(value)),
                    None,
                ),
            },
            OptionType::MimeType => {
                let token = |part: &str| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
                };
                let fits = value
                    .as_str()
                    .and_then(|text| text.split_once('/'))
                    .is_some_and(|(kind, sub)| token(kind) && token(sub));
                if !fits {
                    refuse!(
                        format!(
                            "expected a MIME type like `image/png`, found {}",
                            shown(value)
                        ),
                        None,
                    );
                }
            }
            OptionType::String => {
                if !value.is_string() {
                    let hint = matches!(value, Value::Number(_) | Value::Bool(_))
                        .then(|| "quote the value to make it a string".to_string());
                    refuse!(format!("expected a string, found {}", shown(value)), hint);
                }
                if let Some(text) = value.as_str()
                    && let Some(regex) = self.regex()
                    && !regex.is_match(text)
                {
                    let means = self.pattern_means.clone().unwrap_or_else(|| {
                        format!("text matching `{}`", self.pattern.as_deref().unwrap_or(""))
                    });
                    refuse!(format!("expected {means}, found {}", shown(value)), None);
                }
            }
            OptionType::Enum => {
                let text = value.as_str();
                if !text.is_some_and(|text| self.values.iter().any(|allowed| allowed == text)) {
                    let list: Vec<String> = self
                        .values
                        .iter()
                        .map(|value| format!("`{value}`"))
                        .collect();
                    let hint = text.and_then(|text| {
                        did_you_mean(text, self.values.iter().map(String::as_str))
                    });
                    refuse!(
                        format!(
                            "expected one of {}, found {}",
                            list.join(", "),
                            shown(value)
                        ),
                        hint,
                    );
                }
            }
            OptionType::List => match value {
                Value::Sequence(items) => {
                    let Some(spec) = self.items.as_deref() else {
                        return;
                    };
                    let mut seen: Vec<(&Value, usize)> = Vec::new();
                    for (index, item) in items.iter().enumerate() {
                        let mut item_path = path.clone();
                        if let Some(last) = item_path.last_mut() {
                            *last = format!("{last}[{index}]");
                        }
                        spec.check(&mut item_path, item, found);
                        let unique = self.unique_by.as_deref();
                        if let Some(key) = unique.and_then(|field| item.get(field)) {
                            let earlier = seen
                                .iter()
                                .find(|(other, _)| *other == key)
                                .map(|(_, first)| *first);
                            seen.push((key, index));
                            if let Some(first) = earlier {
                                let field = unique.unwrap_or_default();
                                item_path.push(field.to_string());
                                found.push(Finding {
                                    path: item_path,
                                    message: format!(
                                        "items {first} and {index} have the same `{field}` ({})",
                                        describe_value(key)
                                    ),
                                    hint: Some(format!("each item needs a `{field}` of its own")),
                                });
                            }
                        }
                    }
                }
                other => refuse!(format!("expected a list, found {}", shown(other)), None),
            },
            OptionType::Map => match value {
                Value::Mapping(map) => {
                    let Some(spec) = self.items.as_deref() else {
                        return;
                    };
                    for (key, inner) in map {
                        let Some(key) = key.as_str() else {
                            refuse!("the keys of this map must be strings".into(), None);
                            continue;
                        };
                        path.push(key.to_string());
                        spec.check(path, inner, found);
                        path.pop();
                    }
                }
                other => refuse!(format!("expected a map, found {}", shown(other)), None),
            },
            OptionType::Object => match value {
                Value::Mapping(map) => {
                    for (key, inner) in map {
                        let Some(key) = key.as_str() else {
                            refuse!("the keys of this map must be strings".into(), None);
                            continue;
                        };
                        path.push(key.to_string());
                        match self.fields.get(key) {
                            Some(spec) => spec.check(path, inner, found),
                            None => {
                                let hint =
                                    did_you_mean(key, self.fields.keys().map(String::as_str))
                                        .or_else(|| {
                                            Some(format!("known keys here: {}", self.field_list()))
                                        });
                                found.push(Finding {
                                    path: path.clone(),
                                    message: format!("unknown key `{key}`"),
                                    hint,
                                });
                            }
                        }
                        path.pop();
                    }
                    for (field, spec) in &self.fields {
                        if spec.required && !map.contains_key(field.as_str()) {
                            let what = spec
                                .description
                                .as_deref()
                                .map(|text| format!(" ({})", first_sentence(text)))
                                .unwrap_or_default();
                            refuse!(
                                format!("missing `{field}`{what}, which has no default"),
                                None
                            );
                        }
                    }
                }
                other => refuse!(
                    format!(
                        "expected a map with {}, found {}",
                        self.field_list(),
                        shown(other)
                    ),
                    None,
                ),
            },
            OptionType::OneOf => match self.alternative_for(value) {
                Some(spec) => {
                    // The value's shape chose an alternative; if the value
                    // itself (not a part of it) is wrong, every alternative
                    // is worth naming.
                    let mut inner = Vec::new();
                    spec.check(path, value, &mut inner);
                    if inner.iter().any(|finding| finding.path == *path) {
                        let expected: Vec<String> =
                            self.one_of.iter().map(OptionSpec::expected).collect();
                        let hint = inner.into_iter().find_map(|finding| finding.hint);
                        refuse!(
                            format!(
                                "expected {}, found {}",
                                expected.join(", or "),
                                shown(value)
                            ),
                            hint,
                        );
                    } else {
                        found.extend(inner);
                    }
                }
                None => {
                    let expected: Vec<String> =
                        self.one_of.iter().map(OptionSpec::expected).collect();
                    refuse!(
                        format!(
                            "expected {}, found {}",
                            expected.join(", or "),
                            shown(value)
                        ),
                        None,
                    );
                }
            },
            OptionType::Any => {}
        }
    }

    /// For `one_of`: the first alternative of the value's shape.
    fn alternative_for(&self, value: &Value) -> Option<&OptionSpec> {
        self.one_of.iter().find(|spec| spec.accepts_shape(value))
    }

    fn accepts_shape(&self, value: &Value) -> bool {
        use OptionType::*;
        match value {
            Value::Sequence(_) => self.kind == List,
            Value::Mapping(_) => matches!(self.kind, Map | Object),
            Value::Bool(_) => self.kind == Bool,
            Value::Number(_) => matches!(self.kind, Int | Port | Size | Duration),
            Value::String(_) => !matches!(self.kind, List | Map | Object | Bool | Int | Port),
            _ => self.kind == Any,
        }
    }

    /// What a value of this type looks like, for messages.
    pub fn expected(&self) -> String {
        match self.kind {
            OptionType::Bool => "`true` or `false`".into(),
            OptionType::Int => "an integer".into(),
            OptionType::Port => "a port (1 to 65535)".into(),
            OptionType::Size => "a size like `50M`".into(),
            OptionType::Duration => "a duration like `30d`".into(),
            OptionType::DnsName => "a DNS name".into(),
            OptionType::MatrixId => "a Matrix user ID like `@alice:example.com`".into(),
            OptionType::HttpsUrl => "an https:// URL".into(),
            OptionType::Uri => format!("a {} URI", self.schemes.join(": or ")),
            OptionType::Email => "an email address".into(),
            OptionType::Ip => "an IP address".into(),
            OptionType::Cidr => "an address range".into(),
            OptionType::Path => "an absolute path".into(),
            OptionType::MimeType => "a MIME type".into(),
            OptionType::String => "a string".into(),
            OptionType::Enum => {
                let list: Vec<String> = self.values.iter().map(|v| format!("`{v}`")).collect();
                list.join(" or ")
            }
            OptionType::List => match &self.items {
                Some(items) => format!("a list of {}", plural(&items.expected())),
                None => "a list".into(),
            },
            OptionType::Map => "a map".into(),
            OptionType::Object => format!("a map with {}", self.field_list()),
            OptionType::OneOf => {
                let list: Vec<String> = self.one_of.iter().map(OptionSpec::expected).collect();
                list.join(", or ")
            }
            OptionType::Any => "any value".into(),
        }
    }

    /// The type as the reference shows it: `list of dns_name`, `enum`.
    pub fn type_name(&self) -> String {
        let name = format!("{:?}", self.kind);
        let mut snake = String::new();
        for (index, c) in name.char_indices() {
            if c.is_ascii_uppercase() && index > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        }
        match (&self.kind, &self.items) {
            (OptionType::List, Some(items)) => format!("list of {}", items.type_name()),
            (OptionType::Map, Some(items)) => format!("map of {}", items.type_name()),
            (OptionType::Enum, _) if !self.values.is_empty() => self.values.join(" \\| "),
            (OptionType::OneOf, _) => {
                let list: Vec<String> = self.one_of.iter().map(OptionSpec::type_name).collect();
                list.join(" or ")
            }
            (OptionType::Int | OptionType::Size, _) => match (self.min, self.max) {
                (Some(min), Some(max)) => format!("{snake} ({min} to {max})"),
                (Some(min), None) => format!("{snake} (at least {min})"),
                (None, Some(max)) => format!("{snake} (at most {max})"),
                (None, None) => snake,
            },
            _ => snake,
        }
    }

    fn field_list(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .keys()
            .map(|field| format!("`{field}`"))
            .collect();
        fields.join(", ")
    }

    fn out_of_bounds(&self, number: i64, shown: &str) -> Option<String> {
        match (self.min, self.max) {
            (Some(min), _) if number < min => {
                Some(format!("expected at least {min}, found {shown}"))
            }
            (_, Some(max)) if number > max => {
                Some(format!("expected at most {max}, found {shown}"))
            }
            _ => None,
        }
    }

    /// Whether a string at `path` (below this option) may hold line breaks.
    pub fn allows_lines_at(&self, path: &[&str]) -> bool {
        match (self.kind, path.split_first()) {
            (OptionType::Any, _) => true,
            (OptionType::String, None) => self.multiline,
            (OptionType::Object, Some((field, rest))) => self
                .fields
                .get(*field)
                .is_some_and(|spec| spec.allows_lines_at(rest)),
            (OptionType::Map, Some((_, rest))) => self
                .items
                .as_deref()
                .is_some_and(|spec| spec.allows_lines_at(rest)),
            // An item's path is its list's (`name[3]`): no segment of its own.
            (OptionType::List, _) => self
                .items
                .as_deref()
                .is_some_and(|spec| spec.allows_lines_at(path)),
            (OptionType::OneOf, _) => self.one_of.iter().any(|spec| spec.allows_lines_at(path)),
            _ => false,
        }
    }

    /// Every string value under `value` that this spec declares secret.
    pub fn secret_values(&self, value: &Value, out: &mut Vec<String>) {
        match (self.kind, value) {
            (_, Value::String(text)) if self.secret && !text.is_empty() => out.push(text.clone()),
            (OptionType::Object, Value::Mapping(map)) => {
                for (field, spec) in &self.fields {
                    if let Some(inner) = map.get(field.as_str()) {
                        spec.secret_values(inner, out);
                    }
                }
            }
            (OptionType::List, Value::Sequence(items)) => {
                if let Some(spec) = &self.items {
                    for item in items {
                        spec.secret_values(item, out);
                    }
                }
            }
            (OptionType::Map, Value::Mapping(map)) => {
                if let Some(spec) = &self.items {
                    for inner in map.values() {
                        spec.secret_values(inner, out);
                    }
                }
            }
            (OptionType::OneOf, value) => {
                if let Some(spec) = self.alternative_for(value) {
                    spec.secret_values(value, out);
                }
            }
            _ => {}
        }
    }
}

fn empty_map() -> Value {
    Value::Mapping(Mapping::new())
}

fn plural(expected: &str) -> String {
    let bare = expected
        .strip_prefix("an ")
        .or_else(|| expected.strip_prefix("a "))
        .unwrap_or(expected);
    format!("{bare}s")
}

fn first_sentence(text: &str) -> &str {
    let text = text.trim();
    text.split(". ")
        .next()
        .unwrap_or(text)
        .trim_end_matches('.')
}

/// The message of `T`'s own parser, for the types the inventory already
/// had (their messages are part of the interface).
fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_yaml::from_value(value.clone()).map_err(|error| error.to_string())
}

pub(crate) fn https_url(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(host, _)| host);
    !host.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'`$;{}<>\\".contains(c))
}

fn email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'`$;{}<>\\,()[]".contains(c))
}

fn cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

fn absolute_path(text: &str) -> bool {
    text == "/"
        || text.starts_with('/')
            && text
                .split('/')
                .skip(1)
                .all(|part| !matches!(part, "" | "." | ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> OptionSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn findings(spec: &OptionSpec, value: &str) -> Vec<String> {
        let value: Value = serde_yaml::from_str(value).unwrap();
        let mut found = Vec::new();
        spec.check(&mut vec!["x".into()], &value, &mut found);
        found
            .into_iter()
            .map(|finding| format!("{}: {}", finding.path.join("."), finding.message))
            .collect()
    }

    #[test]
    fn each_type_accepts_its_values_and_refuses_others() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("{type: bool, default: false}", &["true"], &["yes", "1"]),
            (
                "{type: string, pattern: '[a-z]{1,3}', default: a}",
                &["abc"],
                &["abcd", "A", "a\nb", "1"],
            ),
            ("{type: int, min: 1, default: 1}", &["5"], &["0", "x"]),
            ("{type: port, default: 1}", &["443"], &["0", "70000", "x"]),
            (
                "{type: size, min: 1, default: 1}",
                &["50M", "1024"],
                &["0", "50m", "x"],
            ),
            (
                "{type: duration, min: 1, default: 1h}",
                &["1h", "500"],
                &["0s", "1x"],
            ),
            (
                "{type: dns_name, default: a.b}",
                &["example.com"],
                &["Example.com", "a b"],
            ),
            (
                "{type: matrix_id, default: '@a:b.c'}",
                &["'@a:b.c'"],
                &["a"],
            ),
            (
                "{type: https_url, default: 'https://a'}",
                &["https://a/b"],
                &["http://a", "'https://a b'", "'https://a/;'"],
            ),
            (
                "{type: uri, schemes: [mailto, https], default: 'https://a'}",
                &["'mailto:a@b.c'", "https://a"],
                &["'mailto:x'", "ftp://a"],
            ),
            (
                "{type: email, default: a@b.c}",
                &["a@b.c"],
                &["a", "'a b@c.d'", "a@b"],
            ),
            (
                "{type: ip, default: '::1'}",
                &["'::1'", "192.0.2.1"],
                &["x", "1.2.3"],
            ),
            (
                "{type: cidr, default: 10.0.0.0/8}",
                &["10.0.0.0/8", "fd00::/8"],
                &["10.0.0.0/33", "10.0.0.0"],
            ),
            (
                "{type: path, default: /}",
                &["/a/b"],
                &["a", "/a//b", "/a/../b"],
            ),
            ("{type: mime_type, default: a/b}", &["image/png"], &["png"]),
            ("{type: string, default: ''}", &["x"], &["1", "[a]"]),
            ("{type: enum, values: [a, b], default: a}", &["b"], &["c"]),
            (
                "{type: list, items: {type: port}, default: []}",
                &["[1, 2]"],
                &["[0]", "1"],
            ),
            (
                "{type: map, items: {type: bool}, default: {}}",
                &["{a: true}"],
                &["{a: 1}"],
            ),
            (
                "{type: object, fields: {a: {type: int, default: 1}}, default: {}}",
                &["{a: 2}"],
                &["{b: 2}", "{a: x}"],
            ),
            (
                "{type: one_of, one_of: [{type: enum, values: [open]}, {type: list, items: {type: dns_name}}], default: open}",
                &["open", "[a.b]"],
                &["closed", "[A]", "{}"],
            ),
        ];
        for (declaration, good, bad) in cases {
            let spec = spec(declaration);
            assert!(
                spec.declaration_problems("x").is_empty(),
                "{declaration}: {:?}",
                spec.declaration_problems("x")
            );
            for value in *good {
                assert_eq!(
                    findings(&spec, value),
                    Vec::<String>::new(),
                    "{declaration} {value}"
                );
            }
            for value in *bad {
                assert!(
                    !findings(&spec, value).is_empty(),
                    "{declaration} accepted {value}"
                );
            }
        }
    }

    #[test]
    fn objects_name_the_field_and_fill_defaults() {
        let spec = spec(
            "{type: object, optional: true, fields: {host: {type: string, required: true, description: The SMTP server.}, port: {type: port, default: 587}, user: {type: string, optional: true}}}",
        );
        assert_eq!(
            findings(&spec, "{port: 0, hots: a}"),
            [
                "x.port: port 0 is out of range: expected 1 to 65535",
                "x.hots: unknown key `hots`",
                "x: missing `host` (The SMTP server), which has no default",
            ]
        );
        let value: Value = serde_yaml::from_str("{host: a}").unwrap();
        assert_eq!(
            serde_yaml::to_string(&spec.normalise(&value)).unwrap(),
            "host: a\nport: 587\nuser: null\n"
        );
        assert_eq!(spec.absent_value(), Some(Value::Null));
    }

    #[test]
    fn lists_refuse_duplicates_and_index_their_paths() {
        let spec = spec(
            "{type: list, unique_by: id, default: [], items: {type: object, fields: {id: {type: string, required: true}}}}",
        );
        assert_eq!(
            findings(&spec, "[{id: a}, {id: 1}, {id: a}]"),
            [
                "x[1].id: expected a string, found the number 1",
                "x[2].id: items 0 and 2 have the same `id` (the string \"a\")",
            ]
        );
    }

    #[test]
    fn secrets_never_show_and_are_collected() {
        let object = spec(
            "{type: object, default: {}, fields: {password: {type: string, secret: true, optional: true}}}",
        );
        let shown = findings(&object, "{password: [hunter2]}");
        assert_eq!(
            shown,
            ["x.password: expected a string, found a value (not shown: it is a secret)"]
        );
        let port = spec("{type: port, secret: true, default: 1}");
        assert_eq!(
            findings(&port, "70000"),
            ["x: expected a port (1 to 65535), found a value (not shown: it is a secret)"]
        );
        let value: Value = serde_yaml::from_str("{password: hunter2}").unwrap();
        let mut secrets = Vec::new();
        object.secret_values(&value, &mut secrets);
        assert_eq!(secrets, ["hunter2"]);
    }

    #[test]
    fn declarations_that_cannot_work_are_refused() {
        assert!(
            !spec("{type: enum, default: a}")
                .declaration_problems("x")
                .is_empty()
        );
        assert!(!spec("{type: port}").declaration_problems("x").is_empty());
        assert!(
            !spec("{type: port, default: 0}")
                .declaration_problems("x")
                .is_empty()
        );
        assert!(
            !spec("{type: port, required: true, default: 1}")
                .declaration_problems("x")
                .is_empty()
        );
    }
}
