//! The KeyValueMapOperations policy.

use crate::Setting;
use crate::parse::{Cx, ref_attr};
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
pub struct Entry {
    /// The key.
    pub key: Key,
    /// The values.
    pub values: Vec<String>,
}

/// `<KeyValueMapOperations>`.
#[derive(Debug, Clone, PartialEq, Eq)]
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

pub(crate) fn key_value_map_operations(cx: &mut Cx<'_>, el: &Element) -> KeyValueMapOperations {
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
