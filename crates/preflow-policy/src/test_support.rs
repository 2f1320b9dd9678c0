//! What the policy modules' unit tests share: loading a policy, test keys, variables.

use crate::xml::XmlLimits;
pub(crate) use crate::{PolicyConfig, Source, parse_policy};
pub(crate) use std::collections::HashMap;

pub(crate) const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
pub(crate) const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
pub(crate) const EC256_PRIVATE: &str = include_str!("testdata/ec256_private.pem");
pub(crate) const EC256_PUBLIC: &str = include_str!("testdata/ec256_public.pem");
pub(crate) const EC384_PRIVATE: &str = include_str!("testdata/ec384_private.pem");
pub(crate) const EC384_PUBLIC: &str = include_str!("testdata/ec384_public.pem");

pub(crate) fn load(xml: &str) -> (PolicyConfig, Vec<crate::Diagnostic>) {
    let src = Source::new("p.xml", xml);
    let mut diags = Vec::new();
    let p = parse_policy(&src, &XmlLimits::default(), &mut diags).expect("policy");
    (p.config, diags)
}

pub(crate) fn jwt_cfg(xml: &str) -> crate::jwt::Jwt {
    let (cfg, diags) = load(xml);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    match cfg {
        PolicyConfig::Jwt(j) => *j,
        other => panic!("not a JWT policy: {other:?}"),
    }
}

pub(crate) struct Vars(pub(crate) HashMap<String, String>);

impl Vars {
    pub(crate) fn new(pairs: &[(&str, &str)]) -> Self {
        Vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
    pub(crate) fn get(&self, k: &str) -> Option<String> {
        self.0.get(k).cloned()
    }
}
