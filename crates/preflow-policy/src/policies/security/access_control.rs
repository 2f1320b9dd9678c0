//! `<AccessControl>`: allows or denies client addresses.

use std::net::IpAddr;

use http::StatusCode;

use crate::parse::Cx;
use crate::policies::message::render;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::template::Template;
use crate::xml::Element;

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Reject it.
    Deny,
}

/// `<SourceAddress mask>address</SourceAddress>`; both may be templates such as `{var}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceAddress {
    /// The address.
    pub address: Template,
    /// The CIDR prefix length (`mask`), default 32.
    pub mask: Template,
}

/// `<MatchRule action>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MatchRule {
    /// What a match does.
    pub action: Action,
    /// The addresses; a client matches when it is in any of them.
    pub addresses: Vec<SourceAddress>,
}

/// Which address of `X-Forwarded-For` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidateBasedOn {
    /// `X_FORWARDED_FOR_FIRST_IP` (default).
    #[default]
    FirstIp,
    /// `X_FORWARDED_FOR_LAST_IP`.
    LastIp,
    /// `X_FORWARDED_FOR_ALL_IP`: every address must pass.
    AllIp,
}

/// `<AccessControl>`: IP allow and deny rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessControl {
    /// `<IPRules noRuleMatchAction>`, default ALLOW.
    pub no_rule_match_action: Action,
    /// The rules in document order; the first match decides.
    pub rules: Vec<MatchRule>,
    /// `<IgnoreTrueClientIPHeader>`, default false.
    pub ignore_true_client_ip_header: bool,
    /// `<ValidateBasedOn>`.
    pub validate_based_on: ValidateBasedOn,
}

fn action(cx: &mut Cx<'_>, el: &Element, attr: &str, default: Action) -> Action {
    match el.attribute(attr) {
        None => default,
        Some(a) => match a.value.trim().to_ascii_uppercase().as_str() {
            "ALLOW" => Action::Allow,
            "DENY" => Action::Deny,
            other => {
                cx.error_hint(
                    a.offset,
                    format!("invalid action `{other}`"),
                    "use `ALLOW` or `DENY`",
                );
                default
            }
        },
    }
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> AccessControl {
    cx.known_policy(
        el,
        &["IPRules", "IgnoreTrueClientIPHeader", "ValidateBasedOn"],
    );
    let mut rules = Vec::new();
    let mut no_rule_match_action = Action::Allow;
    if let Some(ip) = el.child("IPRules") {
        cx.known(ip, &["MatchRule"]);
        no_rule_match_action = action(cx, ip, "noRuleMatchAction", Action::Allow);
        for rule in ip.children_named("MatchRule") {
            cx.known(rule, &["SourceAddress"]);
            let action = action(cx, rule, "action", Action::Allow);
            let addresses = rule
                .children_named("SourceAddress")
                .map(|a| SourceAddress {
                    address: Template::parse(a.text()),
                    mask: Template::parse(a.attr("mask").unwrap_or("32").trim()),
                })
                .collect();
            rules.push(MatchRule { action, addresses });
        }
    }
    let validate_based_on = match el.child("ValidateBasedOn") {
        None => ValidateBasedOn::FirstIp,
        Some(v) => match v.text() {
            "X_FORWARDED_FOR_FIRST_IP" => ValidateBasedOn::FirstIp,
            "X_FORWARDED_FOR_LAST_IP" => ValidateBasedOn::LastIp,
            "X_FORWARDED_FOR_ALL_IP" => ValidateBasedOn::AllIp,
            other => {
                cx.error(
                    v.text_offset(),
                    format!("invalid `<ValidateBasedOn>` value `{other}`"),
                );
                ValidateBasedOn::FirstIp
            }
        },
    };
    AccessControl {
        no_rule_match_action,
        rules,
        ignore_true_client_ip_header: cx.child_bool(el, "IgnoreTrueClientIPHeader", false),
        validate_based_on,
    }
}

/// A rule's address. Dotted IPv4 octets may carry leading zeros (`20.10.10.09`, as
/// the reference page writes one), read as decimal.
fn rule_address(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<u8> = s
        .split('.')
        .map(|o| o.parse::<u8>().ok())
        .collect::<Option<Vec<u8>>>()?;
    match octets.as_slice() {
        [a, b, c, d] => Some(IpAddr::V4(std::net::Ipv4Addr::new(*a, *b, *c, *d))),
        _ => None,
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, mask: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = if mask == 0 {
                0
            } else {
                u32::MAX.checked_shl(32 - mask.min(32)).unwrap_or(0)
            };
            (u32::from(a) & m) == (u32::from(b) & m)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = if mask == 0 {
                0
            } else {
                u128::MAX.checked_shl(128 - mask.min(128)).unwrap_or(0)
            };
            (u128::from(a) & m) == (u128::from(b) & m)
        }
        _ => false,
    }
}

fn run<R: Runtime>(rt: &mut R, a: &AccessControl) -> Outcome {
    // The addresses checked: True-Client-IP, else X-Forwarded-For per ValidateBasedOn,
    // else the connection's peer.
    let header = |name: &str| -> Vec<String> {
        rt.request()
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut candidates: Vec<String> = Vec::new();
    if !a.ignore_true_client_ip_header {
        candidates = header("true-client-ip");
        candidates.truncate(1);
    }
    if candidates.is_empty() {
        let xff = header("x-forwarded-for");
        candidates = match a.validate_based_on {
            ValidateBasedOn::FirstIp => xff.into_iter().take(1).collect(),
            ValidateBasedOn::LastIp => xff.into_iter().last().into_iter().collect(),
            ValidateBasedOn::AllIp => xff,
        };
    }
    if candidates.is_empty() {
        candidates.push(rt.client().addr.ip().to_string());
    }
    let mut ips = Vec::new();
    for c in &candidates {
        match c.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                return Outcome::Fault(Fault::new(
                    "steps.accesscontrol.InvalidIPAddress",
                    StatusCode::FORBIDDEN,
                    format!("Invalid IP address : {c}"),
                ));
            }
        }
    }
    for ip in ips {
        let mut decision = None;
        for rule in &a.rules {
            let mut hit = false;
            for addr in &rule.addresses {
                let Ok(net) = render(rt, &addr.address, false) else {
                    continue;
                };
                let mask = render(rt, &addr.mask, false)
                    .ok()
                    .and_then(|m| m.trim().parse::<u32>().ok())
                    .unwrap_or(if net.contains(':') { 128 } else { 32 });
                if let Some(net) = rule_address(net.trim())
                    && in_cidr(ip, net, mask)
                {
                    hit = true;
                    break;
                }
            }
            if hit {
                decision = Some(rule.action);
                break;
            }
        }
        if decision.unwrap_or(a.no_rule_match_action) == Action::Deny {
            return Outcome::Fault(Fault::new(
                "steps.accesscontrol.IPDeniedAccess",
                StatusCode::FORBIDDEN,
                format!("Access Denied for client ip : {ip}"),
            ));
        }
    }
    Outcome::Continue
}

/// The AccessControl policy type.
#[derive(Debug)]
pub(crate) struct AccessControlPolicy;

impl PolicyType for AccessControlPolicy {
    type Config = AccessControl;
    type Compiled = AccessControl;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> AccessControl {
        parse(cx, el)
    }

    fn compile(config: &AccessControl, cx: &BuildCx<'_>) -> Result<AccessControl, CompileError> {
        let _ = cx;
        Ok(config.clone())
    }

    fn run<R: Runtime>(c: &AccessControl, rt: &mut R) -> Outcome {
        run(rt, c)
    }

    fn reads_request_body(a: &AccessControl) -> bool {
        a.rules
            .iter()
            .flat_map(|r| &r.addresses)
            .any(|s| s.address.reads_request_body() || s.mask.reads_request_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("10.1.2.3"), ip("10.1.2.0"), 24));
        assert!(!in_cidr(ip("10.1.3.3"), ip("10.1.2.0"), 24));
        assert!(in_cidr(ip("1.2.3.4"), ip("0.0.0.0"), 0));
        assert!(in_cidr(ip("::1"), ip("::1"), 128));
    }
}
