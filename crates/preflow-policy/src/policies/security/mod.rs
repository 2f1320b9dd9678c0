//! Security policies: OAuthV2, GetOAuthV2Info, SetOAuthV2Info, VerifyAPIKey,
//! BasicAuthentication and AccessControl.

mod access_control;
mod basic_authentication;
pub(crate) mod credentials;
mod get_oauth_v2_info;
mod oauth_v2;
mod set_oauth_v2_info;
mod verify_api_key;

use preflow_oauth::ApiCall;

use crate::runtime::Runtime;

pub(crate) use access_control::AccessControlPolicy;
pub use access_control::{AccessControl, Action, MatchRule, SourceAddress, ValidateBasedOn};
pub(crate) use basic_authentication::BasicAuthenticationPolicy;
pub use basic_authentication::{AssignToVariable, BasicAuthOperation, BasicAuthentication};
pub use credentials::CredField;
pub use get_oauth_v2_info::GetOAuthV2Info;
pub(crate) use get_oauth_v2_info::GetOAuthV2InfoPolicy;
pub(crate) use oauth_v2::OAuthV2Policy;
pub use oauth_v2::{OAuthOperation, OAuthV2, TokenAttribute, TokenRef, TokenType};
pub use set_oauth_v2_info::SetOAuthV2Info;
pub(crate) use set_oauth_v2_info::SetOAuthV2InfoPolicy;
pub use verify_api_key::VerifyApiKey;
pub(crate) use verify_api_key::VerifyApiKeyPolicy;

/// The API call a token or key is checked against.
pub(crate) fn api_call<'a, R: Runtime>(rt: &'a R, scopes: &'a [&'a str]) -> ApiCall<'a> {
    ApiCall {
        proxy: rt.bundle_name(),
        path_suffix: rt.path_suffix(),
        environment: &rt.env().settings.environment,
        required_scopes: scopes,
        scope_match: rt.env().settings.scope_match,
        locations: preflow_oauth::BearerLocations::default(),
        now: rt.now_secs(),
    }
}
