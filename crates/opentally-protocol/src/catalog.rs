//! The event catalog: the published list of what a project may collect.
//!
//! A project keeps its catalog as TOML in its own repository, next to the code that sends the
//! events, so that a change to what is collected is reviewed like any other change. The collector
//! checks every message against it: in strict mode anything the catalog does not name is
//! rejected with a reason; in lenient mode it is dropped and reported. Either way, context
//! fields the catalog does not keep are dropped before anything is stored, and some fields
//! (the IP address, user agent, location, user traits) can never be kept.
//!
//! ```toml
//! version = 1
//! project = "nannyml"
//! mode = "strict"                 # or "lenient"
//! accept = ["track"]              # message types; track only by default
//!
//! [context]
//! keep = ["library", "app", "os", "runtime", "environment", "hardware", "session"]
//!
//! [events.fit]
//! description = "A calculator or estimator was fitted."
//!
//! [events.fit.properties.method]
//! type = "enum"                   # string, integer, number, boolean or enum
//! values = ["cbpe", "dle"]
//! description = "The estimation method."
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;

use crate::context::ContextAllow;
use crate::message::{Map, Message, MessageType, json_kind};
use crate::reject::{Reason, Rejection};

/// Properties that OpenTally defines for every event; a catalog cannot redefine them.
pub const RESERVED_PROPERTIES: [&str; 3] = ["duration_ms", "outcome", "error_type"];

/// The context blocks an OpenTally SDK sends, kept when a catalog has no `[context]` table.
pub const DEFAULT_CONTEXT_KEEP: [&str; 8] = [
    "library",
    "app",
    "os",
    "runtime",
    "environment",
    "hardware",
    "session",
    "ephemeral",
];

/// Context fields that identify a person or a machine; no catalog can keep them.
pub const NEVER_KEPT_CONTEXT: [&str; 6] =
    ["ip", "userAgent", "location", "traits", "device", "network"];

/// The longest string a `string` property may hold when its catalog entry sets no `max_length`.
pub const DEFAULT_MAX_LENGTH: usize = 200;

/// The longest `error_type`; a class name, never a message.
const MAX_ERROR_TYPE_CHARS: usize = 200;

/// What happens to a field the catalog does not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The message is rejected with a reason.
    Strict,
    /// The field is dropped, reported, and the rest of the message stored.
    Lenient,
}

/// A validated catalog.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Catalog {
    pub project: Option<String>,
    pub description: Option<String>,
    pub mode: Mode,
    pub accept: Vec<MessageType>,
    /// Dotted context paths kept; everything else in `context` is dropped.
    pub context_keep: Vec<String>,
    pub events: BTreeMap<String, EventSpec>,
    /// How the app's users turn telemetry off, for the transparency page (`[opt_out]`).
    pub opt_out: Option<OptOut>,
    /// `context_keep` as the tree of scalar leaves it keeps.
    #[serde(skip)]
    pub(crate) context_allow: ContextAllow,
}

/// The app as its users meet it: the name its SDK is initialised with (what `opentally opt-out
/// --app` and `forget --app` take) and the app's own variables that turn telemetry off.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OptOut {
    pub app: String,
    pub env: Vec<String>,
}

/// One event of the catalog.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventSpec {
    pub description: Option<String>,
    pub properties: BTreeMap<String, PropertySpec>,
}

/// One property of an event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PropertySpec {
    #[serde(flatten)]
    pub kind: PropertyType,
    pub description: Option<String>,
    pub required: bool,
}

/// The type of a property and its bounds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PropertyType {
    String { max_length: usize },
    Integer { min: Option<i64>, max: Option<i64> },
    Number { min: Option<f64>, max: Option<f64> },
    Boolean,
    Enum { values: Vec<String> },
}

/// A problem in a catalog file, at a line and column (both from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

// The file as written, with spans so that every error can point at its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    version: Option<Spanned<i64>>,
    project: Option<String>,
    description: Option<String>,
    mode: Option<Spanned<String>>,
    accept: Option<Vec<Spanned<String>>>,
    context: Option<RawContext>,
    opt_out: Option<RawOptOut>,
    #[serde(default)]
    events: BTreeMap<Spanned<String>, RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptOut {
    app: Spanned<String>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    keep: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    description: Option<String>,
    #[serde(default)]
    properties: BTreeMap<Spanned<String>, RawProperty>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperty {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    description: Option<String>,
    #[serde(default)]
    required: bool,
    values: Option<Spanned<Vec<Spanned<String>>>>,
    min: Option<Spanned<toml::Value>>,
    max: Option<Spanned<toml::Value>>,
    max_length: Option<Spanned<i64>>,
}

/// Collects errors with their positions while a raw catalog is validated.
struct Errors<'a> {
    src: &'a str,
    list: Vec<CatalogError>,
}

impl Errors<'_> {
    fn push(&mut self, span: Range<usize>, message: String, hint: Option<&str>) {
        let (line, column) = line_col(self.src, span.start);
        self.list.push(CatalogError {
            line,
            column,
            message,
            hint: hint.map(str::to_owned),
        });
    }
}

/// The line and column (both from 1, column in characters) of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl Catalog {
    /// Reads and validates a catalog; on failure, every problem found, in file order.
    pub fn from_toml_str(src: &str) -> Result<Catalog, Vec<CatalogError>> {
        let raw: RawCatalog = toml::from_str(src).map_err(|e| {
            let (line, column) = line_col(src, e.span().map_or(0, |s| s.start));
            vec![CatalogError {
                line,
                column,
                message: e.message().trim_end().to_owned(),
                hint: None,
            }]
        })?;
        let mut errors = Errors {
            src,
            list: Vec::new(),
        };
        let catalog = build(raw, &mut errors);
        if errors.list.is_empty() {
            Ok(catalog)
        } else {
            errors.list.sort_by_key(|e| (e.line, e.column));
            Err(errors.list)
        }
    }

    /// The number of properties over all events.
    pub fn property_count(&self) -> usize {
        self.events.values().map(|e| e.properties.len()).sum()
    }

    /// The catalog's own checks: the message type, the event and its properties. Properties
    /// dropped in lenient mode are added to `dropped`.
    pub(crate) fn check(
        &self,
        m: &mut Message,
        dropped: &mut Vec<String>,
    ) -> Result<(), Rejection> {
        if !self.accept.contains(&m.kind) {
            return Err(Rejection::new(
                Reason::TypeNotAllowed,
                format!(
                    "the project's catalog does not accept `{}` messages",
                    m.kind
                ),
            ));
        }
        if m.kind != MessageType::Track {
            // Only track events have a catalog entry; the allow-list drops the rest.
            return Ok(());
        }
        let event = m.event.as_deref().unwrap_or_default();
        let spec = match (self.events.get(event), self.mode) {
            (Some(spec), _) => Some(spec),
            (None, Mode::Strict) => {
                return Err(Rejection::new(
                    Reason::UnknownEvent,
                    format!("event `{event}` is not in the project's catalog"),
                ));
            }
            (None, Mode::Lenient) => None,
        };
        self.check_properties(event, spec, &mut m.properties, dropped)
    }

    fn check_properties(
        &self,
        event: &str,
        spec: Option<&EventSpec>,
        props: &mut Map,
        dropped: &mut Vec<String>,
    ) -> Result<(), Rejection> {
        props.retain(|_, v| !v.is_null());
        let mut bad = Vec::new();
        for (name, value) in props.iter() {
            let verdict = if RESERVED_PROPERTIES.contains(&name.as_str()) {
                check_reserved(name, value)
            } else {
                match spec.and_then(|s| s.properties.get(name)) {
                    Some(p) => p.kind.check(name, value),
                    None => Err(Rejection::new(
                        Reason::UnknownProperty,
                        format!("property `{name}` is not in the catalog for event `{event}`"),
                    )),
                }
            };
            if let Err(rejection) = verdict {
                if self.mode == Mode::Strict {
                    return Err(rejection);
                }
                bad.push(name.clone());
            }
        }
        for name in bad {
            props.remove(&name);
            dropped.push(format!("properties.{name}"));
        }
        if self.mode == Mode::Strict
            && let Some(spec) = spec
            && let Some((name, _)) = spec
                .properties
                .iter()
                .find(|(n, p)| p.required && !props.contains_key(*n))
        {
            return Err(Rejection::new(
                Reason::MissingProperty,
                format!("property `{name}` is required for event `{event}`"),
            ));
        }
        Ok(())
    }
}

fn invalid(name: &str, detail: impl fmt::Display) -> Rejection {
    Rejection::new(
        Reason::InvalidProperty,
        format!("property `{name}` {detail}"),
    )
}

pub(crate) fn check_reserved(name: &str, value: &Value) -> Result<(), Rejection> {
    match name {
        "duration_ms" => match value.as_f64() {
            Some(d) if d >= 0.0 => Ok(()),
            Some(_) => Err(invalid(name, "must not be negative")),
            None => Err(invalid(
                name,
                format_args!("must be a number, not {}", json_kind(value)),
            )),
        },
        "outcome" => match value.as_str() {
            Some("ok" | "error") => Ok(()),
            _ => Err(invalid(name, "must be \"ok\" or \"error\"")),
        },
        "error_type" => match value.as_str() {
            Some(s) if is_type_name(s) => Ok(()),
            _ => Err(invalid(
                name,
                "must be an exception class or error kind (letters, digits, `_`, `.`, `:`), never a message",
            )),
        },
        _ => unreachable!("only reserved names reach here"),
    }
}

/// A class or error-kind name such as `ValueError`, `io::ErrorKind::NotFound` or
/// `sklearn.exceptions.NotFittedError`; rejects free text, which could carry user data.
fn is_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'))
        && s.len() <= MAX_ERROR_TYPE_CHARS
}

impl PropertyType {
    fn name(&self) -> &'static str {
        match self {
            PropertyType::String { .. } => "string",
            PropertyType::Integer { .. } => "integer",
            PropertyType::Number { .. } => "number",
            PropertyType::Boolean => "boolean",
            PropertyType::Enum { .. } => "enum",
        }
    }

    /// Checks one value against this type.
    pub fn check(&self, name: &str, v: &Value) -> Result<(), Rejection> {
        let wrong = || {
            invalid(
                name,
                format_args!("must be {}, not {}", self.noun(), json_kind(v)),
            )
        };
        match self {
            PropertyType::String { max_length } => {
                let s = v.as_str().ok_or_else(wrong)?;
                let n = s.chars().count();
                if n > *max_length {
                    return Err(invalid(
                        name,
                        format_args!("is {n} characters; the limit is {max_length}"),
                    ));
                }
            }
            PropertyType::Integer { min, max } => {
                let n = v.as_i64().ok_or_else(wrong)?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(invalid(
                        name,
                        format_args!("is {n}; {}", bounds(*min, *max)),
                    ));
                }
            }
            PropertyType::Number { min, max } => {
                let n = v.as_f64().ok_or_else(wrong)?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(invalid(
                        name,
                        format_args!("is {n}; {}", bounds(*min, *max)),
                    ));
                }
            }
            PropertyType::Boolean => {
                v.as_bool().ok_or_else(wrong)?;
            }
            PropertyType::Enum { values } => {
                let s = v.as_str().ok_or_else(wrong)?;
                if !values.iter().any(|x| x == s) {
                    return Err(invalid(
                        name,
                        format_args!("is {s:?}; expected one of {}", values.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }

    fn noun(&self) -> &'static str {
        match self {
            PropertyType::String { .. } | PropertyType::Enum { .. } => "a string",
            PropertyType::Integer { .. } => "an integer",
            PropertyType::Number { .. } => "a number",
            PropertyType::Boolean => "a boolean",
        }
    }
}

fn bounds<T: fmt::Display>(min: Option<T>, max: Option<T>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("expected {a} to {b}"),
        (Some(a), None) => format!("expected at least {a}"),
        (None, Some(b)) => format!("expected at most {b}"),
        (None, None) => String::new(),
    }
}

fn build(raw: RawCatalog, errors: &mut Errors<'_>) -> Catalog {
    if let Some(v) = &raw.version
        && *v.get_ref() != 1
    {
        errors.push(
            v.span(),
            format!("unsupported catalog version {}", v.get_ref()),
            Some("this version of opentally reads catalog version 1"),
        );
    }
    let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("strict", _)) => Mode::Strict,
        Some(("lenient", _)) => Mode::Lenient,
        Some((other, span)) => {
            errors.push(
                span,
                format!("unknown mode {other:?}"),
                Some("use \"strict\" or \"lenient\""),
            );
            Mode::Strict
        }
    };
    let accept = match raw.accept {
        None => vec![MessageType::Track],
        Some(list) => list
            .iter()
            .filter_map(|t| {
                let found = MessageType::from_name(t.get_ref());
                if found.is_none() {
                    errors.push(
                        t.span(),
                        format!("unknown message type {:?} in `accept`", t.get_ref()),
                        Some("one of track, identify, page, screen, group, alias"),
                    );
                }
                found
            })
            .collect(),
    };
    let context_keep: Vec<String> = match raw.context {
        None => DEFAULT_CONTEXT_KEEP
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        Some(ctx) => ctx
            .keep
            .iter()
            .filter_map(|p| check_context_path(p, errors))
            .collect(),
    };
    let opt_out = raw.opt_out.map(|o| {
        if !crate::names::is_app_name(o.app.get_ref()) {
            errors.push(
                o.app.span(),
                format!("app name {:?} is not usable", o.app.get_ref()),
                Some("the name the SDK is initialised with: 1 to 100 letters, digits, `.`, `-` or `_`"),
            );
        }
        for v in &o.env {
            let name = v.get_ref();
            let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.len() <= 100;
            if !ok {
                errors.push(
                    v.span(),
                    format!("{name:?} is not an environment variable name"),
                    Some("letters, digits and `_`, not starting with a digit"),
                );
            }
        }
        OptOut {
            app: o.app.into_inner(),
            env: o.env.into_iter().map(Spanned::into_inner).collect(),
        }
    });
    let mut events = BTreeMap::new();
    for (name, raw_event) in raw.events {
        check_name(&name, "event", errors);
        let mut properties = BTreeMap::new();
        for (pname, raw_prop) in raw_event.properties {
            check_name(&pname, "property", errors);
            if RESERVED_PROPERTIES.contains(&pname.get_ref().as_str()) {
                errors.push(
                    pname.span(),
                    format!("property `{}` is reserved", pname.get_ref()),
                    Some("duration_ms, outcome and error_type are defined for every event by OpenTally; remove it"),
                );
            }
            if let Some(spec) = build_property(raw_prop, errors) {
                properties.insert(pname.into_inner(), spec);
            }
        }
        events.insert(
            name.into_inner(),
            EventSpec {
                description: raw_event.description,
                properties,
            },
        );
    }
    Catalog {
        project: raw.project,
        description: raw.description,
        mode,
        accept,
        context_allow: ContextAllow::from_keep(&context_keep),
        context_keep,
        events,
        opt_out,
    }
}

fn check_name(name: &Spanned<String>, what: &str, errors: &mut Errors<'_>) {
    let s = name.get_ref();
    if s.is_empty() || s.chars().count() > DEFAULT_MAX_LENGTH || s.chars().any(char::is_control) {
        errors.push(
            name.span(),
            format!("{what} name {s:?} is not usable"),
            Some("names are 1 to 200 characters without control characters"),
        );
    }
}

fn check_context_path(p: &Spanned<String>, errors: &mut Errors<'_>) -> Option<String> {
    let path = p.get_ref();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        errors.push(
            p.span(),
            format!("context path {path:?} is not a dotted path"),
            Some("for example \"os\" or \"app.version\""),
        );
        return None;
    }
    let never = path.split('.').find(|segment| {
        NEVER_KEPT_CONTEXT
            .iter()
            .any(|n| n.eq_ignore_ascii_case(segment))
            || crate::names::is_identifying(segment)
    });
    if never.is_some() {
        errors.push(
            p.span(),
            format!("context.{path} can never be kept"),
            Some(
                "it identifies a person or a machine; OpenTally drops it before anything is stored",
            ),
        );
        return None;
    }
    Some(path.clone())
}

fn build_property(raw: RawProperty, errors: &mut Errors<'_>) -> Option<PropertySpec> {
    let kind_name = raw.kind.get_ref().as_str();
    let misplaced = |errors: &mut Errors<'_>, span: Range<usize>, key: &str, applies: &str| {
        errors.push(
            span,
            format!("`{key}` does not apply to type {kind_name}"),
            Some(&format!("`{key}` applies to {applies} properties")),
        );
    };
    if kind_name != "enum"
        && let Some(v) = &raw.values
    {
        misplaced(errors, v.span(), "values", "enum");
    }
    if kind_name != "string"
        && let Some(v) = &raw.max_length
    {
        misplaced(errors, v.span(), "max_length", "string");
    }
    if !matches!(kind_name, "integer" | "number") {
        for (key, v) in [("min", &raw.min), ("max", &raw.max)] {
            if let Some(v) = v {
                misplaced(errors, v.span(), key, "integer and number");
            }
        }
    }
    let kind = match kind_name {
        "string" => PropertyType::String {
            max_length: max_length(raw.max_length.as_ref(), errors),
        },
        "integer" => {
            let min = int_bound(raw.min.as_ref(), errors);
            let max = int_bound(raw.max.as_ref(), errors);
            check_order(min, max, raw.max.as_ref(), errors);
            PropertyType::Integer { min, max }
        }
        "number" => {
            let min = float_bound(raw.min.as_ref(), errors);
            let max = float_bound(raw.max.as_ref(), errors);
            check_order(min, max, raw.max.as_ref(), errors);
            PropertyType::Number { min, max }
        }
        "boolean" => PropertyType::Boolean,
        "enum" => PropertyType::Enum {
            values: enum_values(&raw, errors),
        },
        other => {
            errors.push(
                raw.kind.span(),
                format!("unknown property type {other:?}"),
                Some("one of string, integer, number, boolean, enum"),
            );
            return None;
        }
    };
    Some(PropertySpec {
        kind,
        description: raw.description,
        required: raw.required,
    })
}

fn max_length(v: Option<&Spanned<i64>>, errors: &mut Errors<'_>) -> usize {
    let Some(v) = v else {
        return DEFAULT_MAX_LENGTH;
    };
    match usize::try_from(*v.get_ref()) {
        Ok(n) if n > 0 => n,
        _ => {
            errors.push(
                v.span(),
                format!("max_length {} must be positive", v.get_ref()),
                None,
            );
            DEFAULT_MAX_LENGTH
        }
    }
}

fn int_bound(v: Option<&Spanned<toml::Value>>, errors: &mut Errors<'_>) -> Option<i64> {
    let v = v?;
    if let toml::Value::Integer(n) = v.get_ref() {
        return Some(*n);
    }
    errors.push(
        v.span(),
        format!(
            "an integer bound must be an integer, not {}",
            v.get_ref().type_str()
        ),
        None,
    );
    None
}

fn float_bound(v: Option<&Spanned<toml::Value>>, errors: &mut Errors<'_>) -> Option<f64> {
    let v = v?;
    match v.get_ref() {
        #[allow(clippy::cast_precision_loss)]
        toml::Value::Integer(n) => Some(*n as f64),
        toml::Value::Float(f) if f.is_finite() => Some(*f),
        other => {
            let what = if other.is_float() {
                "an infinite or NaN float"
            } else {
                other.type_str()
            };
            errors.push(
                v.span(),
                format!("a number bound must be a finite number, not {what}"),
                None,
            );
            None
        }
    }
}

fn check_order<T: PartialOrd + fmt::Display>(
    min: Option<T>,
    max: Option<T>,
    max_span: Option<&Spanned<toml::Value>>,
    errors: &mut Errors<'_>,
) {
    if let (Some(a), Some(b), Some(span)) = (min, max, max_span)
        && a > b
    {
        errors.push(span.span(), format!("max {b} is below min {a}"), None);
    }
}

fn enum_values(raw: &RawProperty, errors: &mut Errors<'_>) -> Vec<String> {
    let Some(values) = &raw.values else {
        errors.push(
            raw.kind.span(),
            "an enum needs `values`".to_owned(),
            Some("values = [\"a\", \"b\"]"),
        );
        return Vec::new();
    };
    if values.get_ref().is_empty() {
        errors.push(
            values.span(),
            "an enum needs at least one value".to_owned(),
            None,
        );
    }
    let mut out: Vec<String> = Vec::new();
    for v in values.get_ref() {
        if out.contains(v.get_ref()) {
            errors.push(
                v.span(),
                format!("enum value {:?} is listed twice", v.get_ref()),
                None,
            );
        } else {
            out.push(v.get_ref().clone());
        }
    }
    out
}

impl PropertySpec {
    /// The type's name as written in catalog files.
    pub fn type_name(&self) -> &'static str {
        self.kind.name()
    }
}
