//! `<JSONThreatProtection>`: limits on the structure of a JSON payload.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

use super::*;
use crate::policies::source::{content_type_has, source_body, source_unavailable};

/// `<JSONThreatProtection>`: limits on a JSON payload. `None` is "no limit" (absent or
/// negative in the policy).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct JsonThreatProtection {
    /// `<Source>`, default `message`.
    pub source: String,
    /// `<ArrayElementCount>`.
    pub array_element_count: Option<u64>,
    /// `<ContainerDepth>`.
    pub container_depth: Option<u64>,
    /// `<ObjectEntryCount>`.
    pub object_entry_count: Option<u64>,
    /// `<ObjectEntryNameLength>` (characters).
    pub object_entry_name_length: Option<u64>,
    /// `<StringValueLength>` (characters).
    pub string_value_length: Option<u64>,
}

pub(crate) fn json_threat_protection(cx: &mut Cx<'_>, el: &Element) -> JsonThreatProtection {
    cx.known_policy(
        el,
        &[
            "Source",
            "ArrayElementCount",
            "ContainerDepth",
            "ObjectEntryCount",
            "ObjectEntryNameLength",
            "StringValueLength",
        ],
    );
    JsonThreatProtection {
        source: source(cx, el),
        array_element_count: limit(cx, el, "ArrayElementCount"),
        container_depth: limit(cx, el, "ContainerDepth"),
        object_entry_count: limit(cx, el, "ObjectEntryCount"),
        object_entry_name_length: limit(cx, el, "ObjectEntryNameLength"),
        string_value_length: limit(cx, el, "StringValueLength"),
    }
}

/// Which JSON limit a payload exceeded; the names are Apigee's fault names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonLimit {
    /// `ExceededContainerDepth`.
    ContainerDepth,
    /// `ExceededObjectEntryCount`.
    ObjectEntryCount,
    /// `ExceededArrayElementCount`.
    ArrayElementCount,
    /// `ExceededObjectEntryNameLength`.
    ObjectEntryNameLength,
    /// `ExceededStringValueLength`.
    StringValueLength,
}

impl JsonLimit {
    /// The fault name (errorcode `steps.jsonthreatprotection.<name>`).
    pub fn fault_name(self) -> &'static str {
        match self {
            Self::ContainerDepth => "ExceededContainerDepth",
            Self::ObjectEntryCount => "ExceededObjectEntryCount",
            Self::ArrayElementCount => "ExceededArrayElementCount",
            Self::ObjectEntryNameLength => "ExceededObjectEntryNameLength",
            Self::StringValueLength => "ExceededStringValueLength",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::ContainerDepth => "container depth",
            Self::ObjectEntryCount => "object entry count",
            Self::ArrayElementCount => "array element count",
            Self::ObjectEntryNameLength => "object entry name length",
            Self::StringValueLength => "string value length",
        }
    }
}

/// A JSON payload that failed a JSONThreatProtection check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct JsonThreat {
    /// The exceeded limit, or `None` for a payload that is not valid JSON
    /// (`ExecutionFailed`).
    pub limit: Option<JsonLimit>,
    /// The line of the payload where the scan stopped (1-based).
    pub line: usize,
    /// What went wrong, in Apigee's words where known.
    pub message: String,
}

impl JsonThreat {
    /// The fault name.
    pub fn fault_name(&self) -> &'static str {
        self.limit.map_or("ExecutionFailed", JsonLimit::fault_name)
    }
}

/// Deepest JSON nesting scanned regardless of the configured limit; serde_json's own
/// recursion limit (128) also applies.
pub const MAX_JSON_DEPTH: u64 = 120;

#[derive(Clone, Copy)]
struct Scan<'a> {
    cfg: &'a JsonThreatProtection,
    depth: u64,
    hit: &'a Cell<Option<(JsonLimit, u64, u64)>>,
}

impl Scan<'_> {
    fn exceed<E: de::Error>(&self, which: JsonLimit, found: u64, max: u64) -> E {
        self.hit.set(Some((which, found, max)));
        E::custom(which.what())
    }

    fn enter<E: de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if let Some(max) = self.cfg.container_depth
            && depth > max
        {
            return Err(self.exceed(JsonLimit::ContainerDepth, depth, max));
        }
        if depth > MAX_JSON_DEPTH {
            return Err(E::custom("nesting deeper than the scanner accepts"));
        }
        Ok(Self { depth, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

struct Key<'a>(Scan<'a>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if let Some(max) = self.0.cfg.object_entry_name_length {
            let n = v.chars().count() as u64;
            if n > max {
                return Err(self.0.exceed(JsonLimit::ObjectEntryNameLength, n, max));
            }
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if let Some(max) = self.cfg.string_value_length {
            let n = v.chars().count() as u64;
            if n > max {
                return Err(self.exceed(JsonLimit::StringValueLength, n, max));
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        let mut count = 0u64;
        while seq.next_element_seed(inner)?.is_some() {
            count += 1;
            if let Some(max) = self.cfg.array_element_count
                && count > max
            {
                return Err(self.exceed(JsonLimit::ArrayElementCount, count, max));
            }
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        let mut count = 0u64;
        while map.next_key_seed(Key(inner))?.is_some() {
            count += 1;
            if let Some(max) = self.cfg.object_entry_count
                && count > max
            {
                return Err(self.exceed(JsonLimit::ObjectEntryCount, count, max));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Scans `payload` against the limits of `cfg`, stopping at the first exceeded one.
///
/// # Errors
/// A [`JsonThreat`] naming the limit (or invalid JSON), the line, and a message in
/// Apigee's form `JSONThreatProtection[<policy>]: Exceeded <limit> at line <n>`.
pub fn scan_json(
    cfg: &JsonThreatProtection,
    policy: &str,
    payload: &[u8],
) -> Result<(), JsonThreat> {
    let hit = Cell::new(None);
    let scan = Scan {
        cfg,
        depth: 0,
        hit: &hit,
    };
    let mut de = serde_json::Deserializer::from_slice(payload);
    let result = scan.deserialize(&mut de).and_then(|()| de.end());
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            let line = e.line();
            Err(match hit.get() {
                Some((which, found, max)) => JsonThreat {
                    limit: Some(which),
                    line,
                    message: format!(
                        "JSONThreatProtection[{policy}]: Exceeded {} at line {line} ({found} is more than the limit of {max})",
                        which.what()
                    ),
                },
                None => JsonThreat {
                    limit: None,
                    line,
                    message: format!(
                        "JSONThreatProtection[{policy}]: Execution failed. reason: invalid JSON: {e}"
                    ),
                },
            })
        }
    }
}

/// The JsonThreatProtection policy type.
#[derive(Debug)]
pub(crate) struct JsonThreatProtectionPolicy;

impl PolicyType for JsonThreatProtectionPolicy {
    type Config = JsonThreatProtection;
    type Compiled = (String, JsonThreatProtection);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> JsonThreatProtection {
        json_threat_protection(cx, el)
    }

    fn compile(
        config: &JsonThreatProtection,
        cx: &BuildCx<'_>,
    ) -> Result<(String, JsonThreatProtection), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, JsonThreatProtection), rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let Some(body) = source_body(rt, Some(&cfg.source)) else {
            return Outcome::Fault(source_unavailable("jsonthreatprotection", &cfg.source));
        };
        // As in Apigee, only a JSON payload is checked: an empty body or another
        // content type passes.
        if body.is_empty() || !content_type_has(rt, Some(&cfg.source), "json") {
            return Outcome::Continue;
        }
        match scan_json(cfg, name, &body) {
            Ok(()) => Outcome::Continue,
            Err(t) => Outcome::Fault(Fault::new(
                "steps.jsonthreatprotection.ExecutionFailed",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "JSONThreatProtection[{name}]: Execution failed. reason: {}",
                    t.message
                ),
            )),
        }
    }
}
