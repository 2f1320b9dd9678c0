//! The KeyValueMapOperations policy.

use http::StatusCode;

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

/// The scope of a key value map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvmScope {
    /// `environment` (default).
    #[default]
    Environment,
    /// `organization`.
    Organization,
    /// `apiproxy`.
    ApiProxy,
    /// `policy`.
    Policy,
}

/// A key: one or more parameters (literal or ref) joined into a composite key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Key {
    /// `<Parameter ref>value</Parameter>` in order.
    pub parameters: Vec<Setting<String>>,
}

/// One operation of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmOperation {
    /// `<Get assignTo index>`.
    Get {
        /// The variable that receives the value.
        assign_to: String,
        /// `index` (1-based); all values when absent.
        index: Option<u32>,
        /// The key.
        key: Key,
    },
    /// `<Put override>`.
    Put {
        /// `override`, default false.
        override_existing: bool,
        /// The key.
        key: Key,
        /// `<Value ref>value</Value>` in order.
        values: Vec<Setting<String>>,
    },
    /// `<Delete>`.
    Delete {
        /// The key.
        key: Key,
    },
}

/// `<InitialEntries><Entry>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Entry {
    /// The key.
    pub key: Key,
    /// The values.
    pub values: Vec<String>,
}

/// `<KeyValueMapOperations>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyValueMapOperations {
    /// `mapIdentifier` attribute.
    pub map_identifier: Option<String>,
    /// `<MapName ref>` (Apigee X), the alternative to `mapIdentifier`.
    pub map_name: Setting<String>,
    /// `<Scope>`.
    pub scope: KvmScope,
    /// `<ExpiryTimeInSecs>`: read cache lifetime.
    pub expiry_time_in_secs: Option<i64>,
    /// `<InitialEntries>`.
    pub initial_entries: Vec<Entry>,
    /// Operations in document order.
    pub operations: Vec<KvmOperation>,
}

fn key(cx: &mut Cx<'_>, el: Option<&Element>) -> Key {
    let Some(el) = el else {
        return Key::default();
    };
    cx.known(el, &["Parameter"]);
    Key {
        parameters: el
            .children_named("Parameter")
            .map(|p| Setting {
                value: p.non_empty_text().map(str::to_owned),
                reference: ref_attr(p),
            })
            .collect(),
    }
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> KeyValueMapOperations {
    cx.known_policy(
        el,
        &[
            "Scope",
            "ExpiryTimeInSecs",
            "InitialEntries",
            "Get",
            "Put",
            "Delete",
            "MapName",
            "ExclusiveCache",
        ],
    );
    let scope = match el.child("Scope") {
        None => KvmScope::Environment,
        Some(s) => match s.text().to_ascii_lowercase().as_str() {
            "environment" | "" => KvmScope::Environment,
            "organization" => KvmScope::Organization,
            "apiproxy" => KvmScope::ApiProxy,
            "policy" => KvmScope::Policy,
            other => {
                cx.error_hint(
                    s.text_offset(),
                    format!("invalid KVM scope `{other}`"),
                    "use `environment`, `organization`, `apiproxy` or `policy`",
                );
                KvmScope::Environment
            }
        },
    };
    let mut operations = Vec::new();
    for op in &el.children {
        match op.name.as_str() {
            "Get" => {
                cx.known(op, &["Key"]);
                operations.push(KvmOperation::Get {
                    assign_to: op.attr("assignTo").unwrap_or_default().trim().to_owned(),
                    index: cx.attr_number(op, "index"),
                    key: key(cx, op.child("Key")),
                });
            }
            "Put" => {
                cx.known(op, &["Key", "Value"]);
                operations.push(KvmOperation::Put {
                    override_existing: cx.attr_bool(op, "override", false),
                    key: key(cx, op.child("Key")),
                    values: op
                        .children_named("Value")
                        .map(|v| Setting {
                            value: v.non_empty_text().map(str::to_owned),
                            reference: ref_attr(v),
                        })
                        .collect(),
                });
            }
            "Delete" => {
                cx.known(op, &["Key"]);
                operations.push(KvmOperation::Delete {
                    key: key(cx, op.child("Key")),
                });
            }
            _ => {}
        }
    }
    let initial_entries = el
        .child("InitialEntries")
        .map(|i| {
            i.children_named("Entry")
                .map(|e| Entry {
                    key: key(cx, e.child("Key")),
                    values: e
                        .children_named("Value")
                        .map(|v| v.text().to_owned())
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let map_name = cx.string_setting(el.child("MapName"));
    let map_identifier = el.attr("mapIdentifier").map(|m| m.trim().to_owned());
    if map_identifier.is_some() && !map_name.is_empty() {
        cx.warning(
            el.offset,
            "use either `mapIdentifier` or `<MapName>`, not both",
        );
    }
    KeyValueMapOperations {
        map_identifier,
        map_name,
        scope,
        expiry_time_in_secs: el.child("ExpiryTimeInSecs").and_then(|e| cx.number(e)),
        initial_entries,
        operations,
    }
}

fn kvm_key<R: Runtime>(rt: &R, key: &Key) -> Option<String> {
    let mut parts = Vec::with_capacity(key.parameters.len());
    for p in &key.parameters {
        let v = p
            .reference
            .as_deref()
            .and_then(|r| rt.variable(r))
            .or_else(|| p.value.clone())?;
        parts.push(v);
    }
    Some(parts.join("__"))
}

fn kvm_map<R: Runtime>(rt: &R, policy: &str, k: &KeyValueMapOperations) -> String {
    let map = k
        .map_name
        .reference
        .as_deref()
        .and_then(|r| rt.variable(r))
        .or_else(|| k.map_name.value.clone())
        .or_else(|| k.map_identifier.clone())
        .unwrap_or_else(|| "kvmap".to_owned());
    let bundle_name = rt.bundle_name();
    match k.scope {
        KvmScope::Organization => format!("org\u{1}{map}"),
        KvmScope::Environment => format!("env\u{1}{}\u{1}{map}", rt.env().settings.environment),
        KvmScope::ApiProxy => format!("proxy\u{1}{bundle_name}\u{1}{map}"),
        KvmScope::Policy => format!("policy\u{1}{bundle_name}\u{1}{policy}\u{1}{map}"),
    }
}

fn kvm_fault(name: &'static str, why: String) -> Outcome {
    Outcome::Fault(Fault::new(
        format!("steps.keyvaluemapoperations.{name}"),
        StatusCode::INTERNAL_SERVER_ERROR,
        why,
    ))
}

/// Runs the operations on the gateway's in-memory maps. Initial entries are written on
/// first use of the map.
fn run<R: Runtime>(rt: &mut R, policy: &str, k: &KeyValueMapOperations) -> Outcome {
    let map = kvm_map(rt, policy, k);
    let seeded = format!("{map}\u{2}seeded");
    if !rt.env().kvm.contains_key(&seeded) {
        for e in &k.initial_entries {
            let parts: Option<Vec<String>> =
                e.key.parameters.iter().map(|p| p.value.clone()).collect();
            if let Some(parts) = parts {
                let full = format!("{map}\u{2}{}", parts.join("__"));
                rt.env().kvm.entry(full).or_insert_with(|| e.values.clone());
            }
        }
        rt.env().kvm.insert(seeded, Vec::new());
    }
    for op in &k.operations {
        match op {
            KvmOperation::Get {
                assign_to,
                index,
                key,
            } => {
                let Some(key) = kvm_key(rt, key) else {
                    return kvm_fault("KeyIsMissing", "Key is missing".to_owned());
                };
                let values = rt
                    .env()
                    .kvm
                    .get(&format!("{map}\u{2}{key}"))
                    .map(|v| v.clone());
                let Some(values) = values else { continue };
                let value = match index {
                    Some(i) => match values.get(usize::try_from(*i).unwrap_or(0).saturating_sub(1))
                    {
                        Some(v) => v.clone(),
                        None => {
                            return kvm_fault("InvalidIndex", format!("Invalid index {i}"));
                        }
                    },
                    None => values.join(","),
                };
                rt.set_variable(assign_to.trim(), value);
            }
            KvmOperation::Put {
                override_existing,
                key,
                values,
            } => {
                let Some(key) = kvm_key(rt, key) else {
                    return kvm_fault("KeyIsMissing", "Key is missing".to_owned());
                };
                let mut vals = Vec::new();
                for v in values {
                    match v
                        .reference
                        .as_deref()
                        .and_then(|r| rt.variable(r))
                        .or_else(|| v.value.clone())
                    {
                        Some(x) => vals.push(x),
                        None => return kvm_fault("ValueIsMissing", "Value is missing".to_owned()),
                    }
                }
                let full = format!("{map}\u{2}{key}");
                if *override_existing || !rt.env().kvm.contains_key(&full) {
                    rt.env().kvm.insert(full, vals);
                }
            }
            KvmOperation::Delete { key } => {
                let Some(key) = kvm_key(rt, key) else {
                    return kvm_fault("KeyIsMissing", "Key is missing".to_owned());
                };
                rt.env().kvm.remove(&format!("{map}\u{2}{key}"));
            }
        }
    }
    Outcome::Continue
}

/// The KeyValueMapOperations policy type.
#[derive(Debug)]
pub(crate) struct KeyValueMapPolicy;

impl PolicyType for KeyValueMapPolicy {
    type Config = KeyValueMapOperations;
    type Compiled = (String, Box<KeyValueMapOperations>);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> KeyValueMapOperations {
        parse(cx, el)
    }

    fn compile(
        config: &KeyValueMapOperations,
        cx: &BuildCx<'_>,
    ) -> Result<(String, Box<KeyValueMapOperations>), CompileError> {
        Ok((cx.name.to_owned(), Box::new(config.clone())))
    }

    fn run<R: Runtime>(c: &(String, Box<KeyValueMapOperations>), rt: &mut R) -> Outcome {
        run(rt, &c.0, &c.1)
    }

    fn variables_set(k: &KeyValueMapOperations) -> Vec<String> {
        k.operations
            .iter()
            .filter_map(|op| match op {
                KvmOperation::Get { assign_to, .. } => Some(assign_to.clone()),
                _ => None,
            })
            .collect()
    }
}
