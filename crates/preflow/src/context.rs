//! The engine's side of a running policy: [`PolicyContext`] implements the policies'
//! [`Runtime`] over one exchange.

use std::collections::HashMap;
use std::time::SystemTime;

use preflow_condition::{Compiled, Value, Variables};
use preflow_policy::runtime::{Client, Env, ExchangeState, Message, PolicyRef, Runtime};
use preflow_policy::vars::{Slot, resolve_name};

use crate::compiled::Inner;
use crate::exchange::Exchange;
use crate::vars::{View, remove_variable, set_variable};

/// One policy running on one exchange.
pub(crate) struct PolicyContext<'a> {
    pub g: &'a Inner,
    pub ex: &'a mut Exchange,
    pub at: PolicyRef,
}

impl PolicyContext<'_> {
    fn index(&self) -> Option<&HashMap<String, usize>> {
        self.g.bundles.get(self.at.bundle).map(|b| &b.policy_index)
    }
}

/// Variables by name, resolved as they are read: conditions written inside policies.
struct ByName<'a> {
    view: View<'a>,
    bundle: usize,
    index: Option<&'a HashMap<String, usize>>,
}

impl Variables for ByName<'_> {
    type Handle = Box<str>;
    fn get(&self, handle: &Box<str>) -> Value<'_> {
        let empty = HashMap::new();
        let slot = resolve_name(handle, self.bundle, self.index.unwrap_or(&empty));
        self.view.value(&slot)
    }
}

impl Runtime for PolicyContext<'_> {
    fn env(&self) -> &Env {
        &self.g.env
    }

    fn policy(&self) -> PolicyRef {
        self.at
    }

    fn bundle_name(&self) -> &str {
        self.g
            .bundles
            .get(self.at.bundle)
            .map_or("", |b| b.name.as_str())
    }

    fn resolve(&self, name: &str) -> Slot {
        let empty = HashMap::new();
        resolve_name(name, self.at.bundle, self.index().unwrap_or(&empty))
    }

    fn value(&self, slot: &Slot) -> Value<'_> {
        View {
            g: self.g,
            ex: self.ex,
        }
        .value(slot)
    }

    fn eval(&self, condition: &Compiled<Box<str>>) -> bool {
        condition.eval(&ByName {
            view: View {
                g: self.g,
                ex: self.ex,
            },
            bundle: self.at.bundle,
            index: self.index(),
        })
    }

    fn set_variable(&mut self, name: &str, value: String) {
        set_variable(self.g, self.ex, self.at.bundle, name, value);
    }

    fn remove_variable(&mut self, name: &str) {
        remove_variable(self.g, self.ex, self.at.bundle, name);
    }

    fn print(&mut self, line: &str) {
        let (g, at) = (self.g, self.at);
        self.ex.record(|| crate::TraceEvent::Print {
            policy: g
                .bundles
                .get(at.bundle)
                .and_then(|b| b.policies.get(at.policy))
                .map(|p| p.name().to_owned())
                .unwrap_or_default(),
            line: line.to_owned(),
        });
    }

    fn request(&self) -> &Message {
        &self.ex.request
    }

    fn request_mut(&mut self) -> &mut Message {
        self.ex.materialize();
        &mut self.ex.request
    }

    fn original_uri(&self) -> &http::Uri {
        &self.ex.original_uri
    }

    fn response(&self) -> Option<&Message> {
        self.ex.response.as_ref()
    }

    fn response_mut(&mut self) -> &mut Option<Message> {
        &mut self.ex.response
    }

    fn is_response_side(&self) -> bool {
        self.ex.stage.is_response_side()
    }

    fn path_suffix(&self) -> &str {
        self.ex.path_suffix()
    }

    fn client(&self) -> Client {
        self.ex.client
    }

    fn now(&self) -> SystemTime {
        self.ex.now
    }

    fn now_ns(&self) -> u64 {
        self.ex.now_ns
    }

    fn state(&self) -> &ExchangeState {
        &self.ex.state
    }

    fn state_mut(&mut self) -> &mut ExchangeState {
        &mut self.ex.state
    }

    fn mark_failed(&mut self) {
        if !self.ex.failed.contains(&self.at) {
            self.ex.failed.push(self.at);
        }
    }

    fn invalidate_params(&mut self) {
        self.ex.invalidate_params();
    }

    fn query_params(&self) -> &[(String, String)] {
        self.ex.query_params()
    }

    fn form_params(&self) -> &[(String, String)] {
        self.ex.form_params()
    }
}
