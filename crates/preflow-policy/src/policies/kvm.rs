//! The KeyValueMapOperations policy.

use http::StatusCode;

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{
    Fault, KvOp, KvReply, Outcome, Runtime, StateMode, StoreOp, StoreReply, Waiting,
};
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

fn map_name<R: Runtime>(rt: &R, k: &KeyValueMapOperations) -> String {
    k.map_name
        .reference
        .as_deref()
        .and_then(|r| rt.variable(r))
        .or_else(|| k.map_name.value.clone())
        .or_else(|| k.map_identifier.clone())
        .unwrap_or_else(|| "kvmap".to_owned())
}

fn kvm_map<R: Runtime>(rt: &R, policy: &str, k: &KeyValueMapOperations) -> String {
    let map = map_name(rt, k);
    let bundle_name = rt.bundle_name();
    match k.scope {
        KvmScope::Organization => format!("org\u{1}{map}"),
        KvmScope::Environment => environment_map(&rt.env().settings.environment, &map),
        KvmScope::ApiProxy => format!("proxy\u{1}{bundle_name}\u{1}{map}"),
        KvmScope::Policy => format!("policy\u{1}{bundle_name}\u{1}{policy}\u{1}{map}"),
    }
}

/// The stored-name prefix of environment map `map` (as [`kvm_map`] names it).
pub(crate) fn environment_map(environment: &str, map: &str) -> String {
    format!("env\u{1}{environment}\u{1}{map}")
}

/// Whether the policy's map is an encrypted environment map.
fn is_encrypted<R: Runtime>(rt: &R, policy: &str, k: &KeyValueMapOperations) -> bool {
    let map = kvm_map(rt, policy, k);
    rt.env().encrypted_kvms.contains(&map)
}

/// Seals and opens the values of encrypted maps: XChaCha20-Poly1305 with a random
/// 192-bit nonce per value, stored as `enc:v1:` and Base64 of nonce and ciphertext.
/// Values written in clear (InitialEntries, which Apigee also stores unencrypted) read
/// as they are.
pub(crate) struct KvmCipher(chacha20poly1305::XChaCha20Poly1305);

impl std::fmt::Debug for KvmCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvmCipher(..)")
    }
}

const SEALED: &str = "enc:v1:";

impl KvmCipher {
    /// A cipher under `key`, or under a random key (per deployment).
    pub(crate) fn new(key: Option<[u8; 32]>) -> Self {
        use chacha20poly1305::KeyInit as _;
        let key = key.unwrap_or_else(|| {
            use rand::RngCore as _;
            let mut k = [0u8; 32];
            rand::rng().fill_bytes(&mut k);
            k
        });
        Self(chacha20poly1305::XChaCha20Poly1305::new(&key.into()))
    }

    pub(crate) fn seal(&self, plain: &str) -> String {
        use base64::Engine as _;
        use chacha20poly1305::aead::Aead as _;
        use rand::RngCore as _;
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        match self.0.encrypt(&nonce.into(), plain.as_bytes()) {
            Ok(ct) => {
                let mut all = nonce.to_vec();
                all.extend_from_slice(&ct);
                format!(
                    "{SEALED}{}",
                    base64::engine::general_purpose::STANDARD.encode(all)
                )
            }
            // Encryption of an in-memory buffer does not fail; never store clear text.
            Err(_) => String::new(),
        }
    }

    /// The clear text of a stored value; `None` when a sealed value does not open.
    pub(crate) fn open(&self, stored: &str) -> Option<String> {
        use base64::Engine as _;
        use chacha20poly1305::aead::Aead as _;
        let Some(b64) = stored.strip_prefix(SEALED) else {
            return Some(stored.to_owned());
        };
        let all = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let (nonce, ct) = all.split_at_checked(24)?;
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let plain = self.0.decrypt(&nonce.into(), ct).ok()?;
        String::from_utf8(plain).ok()
    }
}

fn kvm_fault(name: &'static str, why: String) -> Outcome {
    Outcome::Fault(Fault::new(
        format!("steps.keyvaluemapoperations.{name}"),
        StatusCode::INTERNAL_SERVER_ERROR,
        why,
    ))
}

/// Sets `assign_to` to the value at `index` (1-based), or to all values as Java prints
/// the `java.util.List` the reference page says it assigns (`[val1, val2]`); a single
/// value is assigned as is.
fn assign<R: Runtime>(
    rt: &mut R,
    assign_to: &str,
    index: Option<u32>,
    values: &[String],
    encrypted: bool,
) -> Result<(), Outcome> {
    let opened: Vec<String>;
    let values = if encrypted {
        // An encrypted map's values go only to `private.` variables, which traces and
        // debug output never show.
        if !assign_to.trim().starts_with("private.") {
            return Err(kvm_fault(
                "PrivateVariableRequired",
                format!(
                    "the map is encrypted: assign its values to a `private.` variable, not `{}`",
                    assign_to.trim()
                ),
            ));
        }
        let Some(v) = values
            .iter()
            .map(|v| rt.env().kvm_cipher.open(v))
            .collect::<Option<Vec<String>>>()
        else {
            return Err(kvm_fault(
                "DecryptionFailed",
                "an encrypted value could not be decrypted with this deployment's key".into(),
            ));
        };
        opened = v;
        &opened
    } else {
        values
    };
    let value = match index {
        Some(i) => match values.get(usize::try_from(i).unwrap_or(0).saturating_sub(1)) {
            Some(v) => v.clone(),
            None => return Err(kvm_fault("InvalidIndex", format!("Invalid index {i}"))),
        },
        // One value reads as itself (the common `<Get assignTo>` of a single entry).
        None => match values {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        },
    };
    rt.set_variable(assign_to.trim(), value);
    Ok(())
}

/// The values of a `<Put>`, resolved.
fn put_values<R: Runtime>(
    rt: &R,
    values: &[Setting<String>],
    encrypted: bool,
) -> Result<Vec<String>, Outcome> {
    let mut vals = Vec::with_capacity(values.len());
    for v in values {
        match v
            .reference
            .as_deref()
            .and_then(|r| rt.variable(r))
            .or_else(|| v.value.clone())
        {
            Some(x) if encrypted => vals.push(rt.env().kvm_cipher.seal(&x)),
            Some(x) => vals.push(x),
            None => return Err(kvm_fault("ValueIsMissing", "Value is missing".to_owned())),
        }
    }
    Ok(vals)
}

fn run<R: Runtime>(rt: &mut R, policy: &str, k: &KeyValueMapOperations) -> Outcome {
    match rt.env().state {
        StateMode::Local => run_local(rt, policy, k),
        StateMode::Remote => remote_from(rt, policy, k, 0),
    }
}

/// The store namespace of the map in [`StateMode::Remote`]:
/// `kvm:{ORG}:MAP`, `kvm:{ORG/env/ENV}:MAP`, `kvm:{ORG/proxy/PROXY}:MAP` or
/// `kvm:{ORG/proxy/PROXY/policy/POLICY}:MAP` by scope. API-proxy and policy maps are
/// shared by every environment of the proxy, as in Apigee.
fn namespace<R: Runtime>(rt: &R, policy: &str, k: &KeyValueMapOperations) -> String {
    let map = map_name(rt, k);
    let settings = &rt.env().settings;
    let org = &settings.organization;
    let proxy = rt.bundle_name();
    match k.scope {
        KvmScope::Organization => format!("kvm:{{{org}}}:{map}"),
        KvmScope::Environment => format!("kvm:{{{org}/env/{}}}:{map}", settings.environment),
        KvmScope::ApiProxy => format!("kvm:{{{org}/proxy/{proxy}}}:{map}"),
        KvmScope::Policy => format!("kvm:{{{org}/proxy/{proxy}/policy/{policy}}}:{map}"),
    }
}

/// How many maps this process remembers having seeded with their initial entries; past
/// it (map names taken from variables) maps are seeded again, which is harmless.
const MAX_SEEDED_MAPS: usize = 10_000;

/// The values of an entry as stored: a JSON array of strings.
fn encode_values(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}

/// The values of a stored entry; a value that is not a JSON array of strings (written by
/// something else) is one value.
fn decode_values(stored: String) -> Vec<String> {
    serde_json::from_str(&stored).unwrap_or_else(|_| vec![stored])
}

fn store_unavailable() -> Outcome {
    Outcome::Fault(Fault::new(
        "steps.keyvaluemapoperations.StoreUnavailable",
        StatusCode::SERVICE_UNAVAILABLE,
        "The key value map store is unavailable",
    ))
}

/// Runs the policy as store operations from `step` on: steps `0..n` write the `n`
/// initial entries (without overwriting, once per map and process), the next ones are
/// the operations in document order. Each step is one [`KvOp`]; the reply resumes at
/// [`resume`].
fn remote_from<R: Runtime>(
    rt: &mut R,
    policy: &str,
    k: &KeyValueMapOperations,
    mut step: usize,
) -> Outcome {
    let namespace = namespace(rt, policy, k);
    let seeds = k.initial_entries.len();
    let marker = format!("{namespace}\u{2}seeded");
    if step == 0 && seeds > 0 && rt.env().kvm.contains_key(&marker) {
        step = seeds;
    }
    let now = rt.now_ns();
    while let Some(e) = k.initial_entries.get(step) {
        let parts: Option<Vec<String>> = e.key.parameters.iter().map(|p| p.value.clone()).collect();
        if let Some(parts) = parts {
            let op = KvOp::Put {
                namespace,
                key: parts.join("__"),
                value: encode_values(&e.values),
                expires_at: None,
                overwrite: false,
                now,
            };
            return Outcome::Store(StoreOp::Kv(op), Waiting::Step(step));
        }
        step += 1;
    }
    if seeds > 0 && step == seeds && rt.env().kvm.len() < MAX_SEEDED_MAPS {
        rt.env().kvm.insert(marker, Vec::new());
    }
    let Some(op) = step.checked_sub(seeds).and_then(|i| k.operations.get(i)) else {
        return Outcome::Continue;
    };
    let key = match op {
        KvmOperation::Get { key, .. }
        | KvmOperation::Put { key, .. }
        | KvmOperation::Delete { key } => key,
    };
    let Some(key) = kvm_key(rt, key) else {
        return kvm_fault("KeyIsMissing", "Key is missing".to_owned());
    };
    let op = match op {
        KvmOperation::Get { .. } => KvOp::Get {
            namespace,
            key,
            now,
        },
        KvmOperation::Put {
            override_existing,
            values,
            ..
        } => {
            let values = match put_values(rt, values, is_encrypted(rt, policy, k)) {
                Ok(v) => v,
                Err(fault) => return fault,
            };
            KvOp::Put {
                namespace,
                key,
                value: encode_values(&values),
                expires_at: None,
                overwrite: *override_existing,
                now,
            }
        }
        KvmOperation::Delete { .. } => KvOp::Delete { namespace, key },
    };
    Outcome::Store(StoreOp::Kv(op), Waiting::Step(step))
}

/// Takes the reply to the store operation of `step` and goes on with the next one.
fn resume<R: Runtime>(
    rt: &mut R,
    policy: &str,
    k: &KeyValueMapOperations,
    waiting: Waiting,
    reply: StoreReply,
) -> Outcome {
    let Waiting::Step(step) = waiting else {
        return Outcome::Continue;
    };
    let reply = match reply {
        StoreReply::Kv(reply) => reply,
        _ => return store_unavailable(),
    };
    let op = step
        .checked_sub(k.initial_entries.len())
        .and_then(|i| k.operations.get(i));
    if let Some(KvmOperation::Get {
        assign_to,
        index,
        key,
    }) = op
    {
        // Not in the store: the host's environment maps are in memory.
        let values = match reply {
            KvReply::Value(Some(stored)) => Some(decode_values(stored)),
            _ => kvm_key(rt, key).and_then(|key| {
                let map = kvm_map(rt, policy, k);
                rt.env()
                    .kvm
                    .get(&format!("{map}\u{2}{key}"))
                    .map(|v| v.clone())
            }),
        };
        if let Some(values) = values {
            let encrypted = is_encrypted(rt, policy, k);
            if let Err(fault) = assign(rt, assign_to, *index, &values, encrypted) {
                return fault;
            }
        }
    }
    remote_from(rt, policy, k, step.saturating_add(1))
}

/// Runs the operations on the gateway's in-memory maps. Initial entries are written on
/// first use of the map.
fn run_local<R: Runtime>(rt: &mut R, policy: &str, k: &KeyValueMapOperations) -> Outcome {
    let map = kvm_map(rt, policy, k);
    let encrypted = rt.env().encrypted_kvms.contains(&map);
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
                if let Err(fault) = assign(rt, assign_to, *index, &values, encrypted) {
                    return fault;
                }
            }
            KvmOperation::Put {
                override_existing,
                key,
                values,
            } => {
                let Some(key) = kvm_key(rt, key) else {
                    return kvm_fault("KeyIsMissing", "Key is missing".to_owned());
                };
                let vals = match put_values(rt, values, encrypted) {
                    Ok(v) => v,
                    Err(fault) => return fault,
                };
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

    fn resume<R: Runtime>(
        c: &(String, Box<KeyValueMapOperations>),
        rt: &mut R,
        waiting: Waiting,
        reply: StoreReply,
    ) -> Outcome {
        resume(rt, &c.0, &c.1, waiting, reply)
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

#[cfg(test)]
mod encryption_tests {
    use super::KvmCipher;
    use crate::runtime::{Env, KvmMap, PolicyResources, Settings, StateMode};

    #[test]
    fn sealed_values_open_only_under_their_key() {
        let a = KvmCipher::new(Some([1; 32]));
        let b = KvmCipher::new(Some([2; 32]));
        let sealed = a.seal("s3cret");
        assert!(sealed.starts_with("enc:v1:") && !sealed.contains("s3cret"));
        assert_ne!(sealed, a.seal("s3cret"), "a fresh nonce per value");
        assert_eq!(a.open(&sealed).as_deref(), Some("s3cret"));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(a.open("clear").as_deref(), Some("clear"));
        assert_eq!(a.open("enc:v1:!!"), None);
    }

    #[test]
    fn environment_maps_are_stored_sealed() {
        let env = Env::new(
            Settings::default(),
            StateMode::Local,
            Default::default(),
            PolicyResources::default()
                .with_kvm(KvmMap {
                    name: "secrets".into(),
                    encrypted: true,
                    entries: vec![("k".into(), vec!["s3cret".into()])],
                })
                .with_kvm(KvmMap {
                    name: "plain".into(),
                    encrypted: false,
                    entries: vec![("k".into(), vec!["visible".into()])],
                }),
        );
        let values: Vec<String> = env.kvm.iter().flat_map(|e| e.value().clone()).collect();
        assert_eq!(values.len(), 2);
        assert!(values.iter().any(|v| v == "visible"));
        assert!(values.iter().all(|v| !v.contains("s3cret")));
        assert_eq!(env.encrypted_kvms.len(), 1);
    }
}
