//! Unit tests: one small hand-written policy per type and construct.

use crate::callout::FlowCallout;
use crate::extract::ExtractVariables;
use crate::kvm::{KeyValueMapOperations, KvmOperation, KvmScope};
use crate::message::{AssignMessage, MessageType, RaiseFault, Selection};
use crate::security::*;
use crate::template::Part;
use crate::traffic::*;
use crate::xml::XmlLimits;
use crate::{Diagnostic, Policy, PolicyConfig, Severity, Source, parse_policy};

fn load(xml: &str) -> (Option<Policy>, Vec<Diagnostic>) {
    let src = Source::new("policies/P.xml", xml);
    let mut diags = Vec::new();
    let policy = parse_policy(&src, &XmlLimits::default(), &mut diags);
    (policy, diags)
}

fn ok(xml: &str) -> Policy {
    let (policy, diags) = load(xml);
    assert!(diags.is_empty(), "{diags:#?}");
    policy.unwrap()
}

fn errors(xml: &str) -> Vec<String> {
    let (_, diags) = load(xml);
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}

#[test]
fn common_attributes() {
    let p = ok(
        r#"<SpikeArrest name="P" enabled="false" continueOnError="true" async="false">
        <DisplayName>Spike</DisplayName><Properties/><Rate>5pm</Rate></SpikeArrest>"#,
    );
    assert_eq!(p.name, "P");
    assert_eq!(p.type_name, "SpikeArrest");
    assert!(!p.enabled);
    assert!(p.continue_on_error);
    assert!(!p.async_);
    assert_eq!(p.display_name.as_deref(), Some("Spike"));
    assert_eq!((p.location.line, p.location.column), (1, 1));
    let d = ok(r#"<SpikeArrest name="P"><Rate>5pm</Rate></SpikeArrest>"#);
    assert!(d.enabled && !d.continue_on_error);
}

#[test]
fn missing_name_and_bad_boolean_are_errors() {
    let (p, diags) = load("<SpikeArrest><Rate>1ps</Rate></SpikeArrest>");
    assert!(p.is_none());
    assert_eq!(
        diags[0].to_string(),
        "policies/P.xml:1:1: error: policy `<SpikeArrest>` has no `name` attribute"
    );
    let e = errors(r#"<SpikeArrest name="P" enabled="yes"><Rate>1ps</Rate></SpikeArrest>"#);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("policies/P.xml:1:32: error: attribute `enabled`"),
        "{e:?}"
    );
}

#[test]
fn not_well_formed_is_an_error_with_position() {
    let (p, diags) = load("<SpikeArrest name=\"P\">\n  <Rate>1ps</Rat>\n</SpikeArrest>");
    assert!(p.is_none());
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].location.line, 2, "{}", diags[0]);
}

#[test]
fn spike_arrest() {
    let p = ok(r#"<SpikeArrest name="P">
        <Identifier ref="client_id"/><MessageWeight ref="w"/>
        <Rate ref="rate.var">30ps</Rate><UseEffectiveCount>true</UseEffectiveCount>
    </SpikeArrest>"#);
    let PolicyConfig::SpikeArrest(sa) = p.config else {
        panic!()
    };
    assert_eq!(
        sa.rate.value,
        Some(Rate {
            count: 30,
            period: RatePeriod::Second
        })
    );
    assert_eq!(sa.rate.reference.as_deref(), Some("rate.var"));
    assert_eq!(sa.identifier.as_deref(), Some("client_id"));
    assert_eq!(sa.message_weight.as_deref(), Some("w"));
    assert!(sa.use_effective_count);
    let e = errors(r#"<SpikeArrest name="P"><Rate>30px</Rate></SpikeArrest>"#);
    assert!(e[0].contains("must be a rate such as `30ps`"), "{e:?}");
    assert!(e[0].starts_with("policies/P.xml:1:29:"), "{e:?}");
    assert_eq!(errors(r#"<SpikeArrest name="P"/>"#).len(), 1);
    assert!(errors(r#"<SpikeArrest name="P"><Rate ref="r"/></SpikeArrest>"#).is_empty());
    assert!(Rate::parse("0ps").is_none());
}

#[test]
fn quota() {
    let p = ok(r#"<Quota name="P" type="calendar">
        <Allow count="20" countRef="verifyapikey.V.apiproduct.developer.quota.limit"/>
        <Interval ref="i">1</Interval><TimeUnit ref="t">hour</TimeUnit>
        <StartTime>2024-01-01 00:00:00</StartTime>
        <Identifier ref="client_id"/><MessageWeight ref="w"/>
        <Distributed>true</Distributed><Synchronous>true</Synchronous>
        <AsynchronousConfiguration><SyncIntervalInSeconds>20</SyncIntervalInSeconds><SyncMessageCount>5</SyncMessageCount></AsynchronousConfiguration>
    </Quota>"#);
    let PolicyConfig::Quota(q) = p.config else {
        panic!()
    };
    assert_eq!(q.quota_type, QuotaType::Calendar);
    assert_eq!(q.allow.count, Some(20));
    assert_eq!(
        q.allow.count_ref.as_deref(),
        Some("verifyapikey.V.apiproduct.developer.quota.limit")
    );
    assert_eq!(q.interval.value, Some(1));
    assert_eq!(q.interval.reference.as_deref(), Some("i"));
    assert_eq!(q.time_unit.value, Some(TimeUnit::Hour));
    assert_eq!(q.start_time.as_deref(), Some("2024-01-01 00:00:00"));
    assert_eq!(q.identifier.as_deref(), Some("client_id"));
    assert!(q.distributed && q.synchronous);
    assert_eq!(q.sync_interval_seconds, Some(20));
    assert_eq!(q.sync_message_count, Some(5));

    let p = ok(r#"<Quota name="P"><Allow><Class ref="request.header.tier">
        <Allow class="gold" count="100"/><Allow class="silver" count="10"/></Class></Allow>
        <Interval>1</Interval><TimeUnit>minute</TimeUnit></Quota>"#);
    let PolicyConfig::Quota(q) = p.config else {
        panic!()
    };
    assert_eq!(q.quota_type, QuotaType::Default);
    let classes = q.allow.classes.unwrap();
    assert_eq!(classes.reference.as_deref(), Some("request.header.tier"));
    assert_eq!(
        classes.counts,
        [("gold".to_owned(), 100), ("silver".to_owned(), 10)]
    );
    assert!(!q.distributed);

    assert!(
        errors(r#"<Quota name="P" type="weekly"/>"#)[0].contains("invalid Quota type `weekly`")
    );
    assert!(
        errors(r#"<Quota name="P"><TimeUnit>fortnight</TimeUnit></Quota>"#)[0]
            .contains("`<TimeUnit>` must be")
    );
    assert!(
        errors(r#"<Quota name="P"><Interval>1.5</Interval></Quota>"#)[0]
            .contains("`<Interval>` must be a whole number")
    );
    assert!(
        errors(
            r#"<Quota name="P"><TimeUnit>second</TimeUnit><Distributed>true</Distributed></Quota>"#
        )[0]
        .contains("not allowed for a distributed Quota")
    );
}

#[test]
fn oauth_v2_generate() {
    let p = ok(r#"<OAuthV2 name="P">
        <Operation>GenerateAccessToken</Operation>
        <ExpiresIn ref="flow.expiry">1800000</ExpiresIn>
        <RefreshTokenExpiresIn>-1</RefreshTokenExpiresIn>
        <SupportedGrantTypes><GrantType>client_credentials</GrantType><GrantType>password</GrantType></SupportedGrantTypes>
        <GrantType>request.formparam.grant_type</GrantType>
        <GenerateResponse enabled="true"/>
        <Scope>request.formparam.scope</Scope>
        <Attributes><Attribute name="tier" ref="app.tier" display="false">free</Attribute></Attributes>
        <ReuseRefreshToken>true</ReuseRefreshToken>
        <ExternalAuthorization>false</ExternalAuthorization>
        <UserName>request.formparam.username</UserName>
        <RFCCompliantRequestResponse>true</RFCCompliantRequestResponse>
    </OAuthV2>"#);
    let PolicyConfig::OAuthV2(o) = p.config else {
        panic!()
    };
    assert_eq!(o.operation, Some(OAuthOperation::GenerateAccessToken));
    assert_eq!(o.expires_in.value, Some(1_800_000));
    assert_eq!(o.expires_in.reference.as_deref(), Some("flow.expiry"));
    assert_eq!(o.refresh_token_expires_in.value, Some(-1));
    assert_eq!(o.supported_grant_types, ["client_credentials", "password"]);
    assert_eq!(
        o.grant_type.as_deref(),
        Some("request.formparam.grant_type")
    );
    assert_eq!(o.generate_response, Some(true));
    assert_eq!(o.scope.as_deref(), Some("request.formparam.scope"));
    assert_eq!(
        o.attributes,
        [TokenAttribute {
            name: "tier".into(),
            reference: Some("app.tier".into()),
            value: Some("free".into()),
            display: false
        }]
    );
    assert!(o.reuse_refresh_token && !o.external_authorization && o.rfc_compliant);
    assert_eq!(
        o.request_variables,
        [(
            "UserName".to_owned(),
            "request.formparam.username".to_owned()
        )]
    );
}

#[test]
fn oauth_v2_verify_and_invalidate() {
    let p = ok(
        r#"<OAuthV2 name="P"><Operation>VerifyAccessToken</Operation><GenerateResponse/>
        <Scope>read write</Scope><AccessToken>flow.token</AccessToken></OAuthV2>"#,
    );
    let PolicyConfig::OAuthV2(o) = p.config else {
        panic!()
    };
    assert_eq!(o.operation, Some(OAuthOperation::VerifyAccessToken));
    assert_eq!(
        o.generate_response,
        Some(true),
        "an element without `enabled` is enabled"
    );
    assert_eq!(o.scope.as_deref(), Some("read write"));
    assert_eq!(o.access_token.as_deref(), Some("flow.token"));
    let p = ok(r#"<OAuthV2 name="P"><Operation>InvalidateToken</Operation>
        <Tokens><Token type="refreshtoken" cascade="true">request.formparam.token</Token></Tokens></OAuthV2>"#);
    let PolicyConfig::OAuthV2(o) = p.config else {
        panic!()
    };
    assert_eq!(o.generate_response, None);
    assert_eq!(
        o.tokens,
        [TokenRef {
            token_type: TokenType::RefreshToken,
            cascade: true,
            variable: Some("request.formparam.token".into())
        }]
    );
    let (_, d) = load(r#"<OAuthV2 name="P"/>"#);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].severity, Severity::Warning);
    assert!(
        d[0].to_string()
            .contains("raises fault `OperationRequired`")
    );
    assert!(
        errors(r#"<OAuthV2 name="P"><Operation>Fly</Operation></OAuthV2>"#)[0]
            .contains("invalid OAuthV2 operation `Fly`")
    );
    for op in [
        "GenerateAuthorizationCode",
        "RefreshAccessToken",
        "ValidateToken",
        "GenerateAccessTokenImplicitGrant",
    ] {
        assert!(OAuthOperation::parse(op).is_some(), "{op}");
    }
}

#[test]
fn get_and_set_oauth_v2_info() {
    let p = ok(r#"<GetOAuthV2Info name="P"><AccessToken ref="access_token"/></GetOAuthV2Info>"#);
    let PolicyConfig::GetOAuthV2Info(g) = p.config else {
        panic!()
    };
    assert_eq!(g.access_token.as_deref(), Some("access_token"));
    assert!(errors(r#"<GetOAuthV2Info name="P"/>"#)[0].contains("needs one of"));
    let p = ok(r#"<SetOAuthV2Info name="P"><AccessToken ref="t"/>
        <Attributes><Attribute name="a" ref="x">d</Attribute></Attributes></SetOAuthV2Info>"#);
    let PolicyConfig::SetOAuthV2Info(s) = p.config else {
        panic!()
    };
    assert_eq!(s.access_token.as_deref(), Some("t"));
    assert_eq!(s.attributes[0].name, "a");
}

#[test]
fn verify_api_key() {
    let p =
        ok(r#"<VerifyAPIKey name="P"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#);
    let PolicyConfig::VerifyApiKey(v) = p.config else {
        panic!()
    };
    assert_eq!(
        v.api_key.reference.as_deref(),
        Some("request.queryparam.apikey")
    );
    assert!(
        errors(r#"<VerifyAPIKey name="P"><APIKey/></VerifyAPIKey>"#)[0]
            .contains("needs an `<APIKey>`")
    );
}

#[test]
fn basic_authentication() {
    let p = ok(
        r#"<BasicAuthentication name="P"><Operation>Decode</Operation>
        <IgnoreUnresolvedVariables>false</IgnoreUnresolvedVariables>
        <User ref="flow.user"/><Password ref="flow.pass"/><Source>request.header.authorization</Source>
    </BasicAuthentication>"#,
    );
    let PolicyConfig::BasicAuthentication(b) = p.config else {
        panic!()
    };
    assert_eq!(b.operation, Some(BasicAuthOperation::Decode));
    assert_eq!(b.user.as_deref(), Some("flow.user"));
    assert_eq!(b.password.as_deref(), Some("flow.pass"));
    assert_eq!(b.source.as_deref(), Some("request.header.authorization"));
    let p = ok(
        r#"<BasicAuthentication name="P"><Operation>Encode</Operation>
        <User ref="u"/><Password ref="p"/><AssignTo createNew="true">request.header.Authorization</AssignTo>
    </BasicAuthentication>"#,
    );
    let PolicyConfig::BasicAuthentication(b) = p.config else {
        panic!()
    };
    assert_eq!(
        b.assign_to,
        Some(AssignToVariable {
            variable: "request.header.Authorization".into(),
            create_new: true
        })
    );
    let e = errors(
        r#"<BasicAuthentication name="P"><Operation>Decode</Operation><User ref="u"/><Password ref="p"/></BasicAuthentication>"#,
    );
    assert!(e[0].contains("Decode needs a `<Source>`"), "{e:?}");
    assert!(errors(r#"<BasicAuthentication name="P"><Operation>Hash</Operation><User ref="u"/><Password ref="p"/></BasicAuthentication>"#)[0]
        .contains("invalid BasicAuthentication operation"));
}

#[test]
fn access_control() {
    let p = ok(r#"<AccessControl name="P">
        <IPRules noRuleMatchAction="DENY">
            <MatchRule action="ALLOW"><SourceAddress mask="24">10.1.2.0</SourceAddress><SourceAddress mask="{m}">{ip}</SourceAddress></MatchRule>
            <MatchRule action="DENY"><SourceAddress>192.168.0.1</SourceAddress></MatchRule>
        </IPRules>
        <ValidateBasedOn>X_FORWARDED_FOR_ALL_IP</ValidateBasedOn>
    </AccessControl>"#);
    let PolicyConfig::AccessControl(a) = p.config else {
        panic!()
    };
    assert_eq!(a.no_rule_match_action, Action::Deny);
    assert_eq!(a.rules.len(), 2);
    assert_eq!(a.rules[0].action, Action::Allow);
    assert_eq!(
        a.rules[0].addresses[0].address.as_literal().as_deref(),
        Some("10.1.2.0")
    );
    assert_eq!(
        a.rules[0].addresses[0].mask.as_literal().as_deref(),
        Some("24")
    );
    assert_eq!(
        a.rules[0].addresses[1].address.parts(),
        &[Part::Variable("ip".into())]
    );
    assert_eq!(
        a.rules[1].addresses[0].mask.as_literal().as_deref(),
        Some("32")
    );
    assert_eq!(a.validate_based_on, ValidateBasedOn::AllIp);
    assert!(
        errors(r#"<AccessControl name="P"><IPRules noRuleMatchAction="MAYBE"/></AccessControl>"#)
            [0]
        .contains("invalid action")
    );
}

#[test]
fn raise_fault() {
    let p = ok(r##"<RaiseFault name="P"><FaultResponse><Set>
        <Headers><Header name="X-Err">{fault.name}</Header></Headers>
        <Payload contentType="application/json" variablePrefix="@" variableSuffix="#">{"error":"@fault.name#"}</Payload>
        <StatusCode>401</StatusCode><ReasonPhrase>Unauthorized</ReasonPhrase>
    </Set></FaultResponse></RaiseFault>"##);
    let PolicyConfig::RaiseFault(RaiseFault {
        fault_response,
        ignore_unresolved_variables,
        ..
    }) = p.config
    else {
        panic!()
    };
    assert!(
        ignore_unresolved_variables,
        "RaiseFault defaults to ignoring unresolved variables"
    );
    let set = fault_response.set.unwrap();
    assert_eq!(set.headers[0].name.as_literal().as_deref(), Some("X-Err"));
    assert_eq!(
        set.headers[0].value.parts(),
        &[Part::Variable("fault.name".into())]
    );
    let payload = set.payload.unwrap();
    assert_eq!(payload.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        payload.template.parts(),
        &[
            Part::Literal(r#"{"error":""#.into()),
            Part::Variable("fault.name".into()),
            Part::Literal("\"}".into())
        ]
    );
    assert_eq!(
        set.status_code.unwrap().as_literal().as_deref(),
        Some("401")
    );
    assert!(errors(r#"<RaiseFault name="P"><FaultResponse><Set><Payload variablePrefix="@@">x</Payload></Set></FaultResponse></RaiseFault>"#)[0]
        .contains("must be one character"));
}

#[test]
fn assign_message() {
    let p = ok(r#"<AssignMessage name="P">
        <AssignTo createNew="true" transport="http" type="response">out</AssignTo>
        <Copy source="request"><Headers/><Payload>true</Payload></Copy>
        <Remove><Headers><Header name="Authorization"/></Headers><QueryParams/></Remove>
        <Add><Headers><Header name="X-A">{client_id}</Header></Headers><QueryParams><QueryParam name="q">1</QueryParam></QueryParams></Add>
        <Set><Payload contentType="text/xml"><root><a>{x}</a></root></Payload><Verb>POST</Verb><Path>/p/{id}</Path></Set>
        <AssignVariable><Name>v1</Name><Ref>other</Ref><Value>dflt</Value></AssignVariable>
        <AssignVariable><Name>v2</Name><Template>{a}-{b}</Template></AssignVariable>
        <IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>
    </AssignMessage>"#);
    let PolicyConfig::AssignMessage(AssignMessage {
        ops,
        ignore_unresolved_variables,
    }) = p.config
    else {
        panic!()
    };
    assert!(ignore_unresolved_variables);
    let to = ops.assign_to.unwrap();
    assert_eq!(
        (to.variable.as_deref(), to.create_new, to.message_type),
        (Some("out"), true, MessageType::Response)
    );
    let copy = ops.copy.unwrap();
    assert_eq!(copy.source.as_deref(), Some("request"));
    assert_eq!(copy.headers, Selection::All);
    assert!(copy.payload && !copy.verb);
    let remove = ops.remove.unwrap();
    assert_eq!(
        remove.headers,
        Selection::Named(vec!["Authorization".into()])
    );
    assert_eq!(remove.query_params, Selection::All);
    assert!(remove.form_params.is_none());
    let add = ops.add.unwrap();
    assert_eq!(
        add.headers[0].value.parts(),
        &[Part::Variable("client_id".into())]
    );
    assert_eq!(add.query_params[0].value.as_literal().as_deref(), Some("1"));
    let set = ops.set.unwrap();
    assert_eq!(
        set.payload.unwrap().template.to_string(),
        "<root><a>{x}</a></root>"
    );
    assert_eq!(set.verb.unwrap().as_literal().as_deref(), Some("POST"));
    assert_eq!(set.path.unwrap().variables().collect::<Vec<_>>(), ["id"]);
    assert_eq!(ops.assign_variables.len(), 2);
    assert_eq!(ops.assign_variables[0].reference.as_deref(), Some("other"));
    assert_eq!(ops.assign_variables[0].value.as_deref(), Some("dflt"));
    assert_eq!(
        ops.assign_variables[1]
            .template
            .as_ref()
            .unwrap()
            .variables()
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let d = ok(r#"<AssignMessage name="P"/>"#);
    let PolicyConfig::AssignMessage(a) = d.config else {
        panic!()
    };
    assert!(
        !a.ignore_unresolved_variables,
        "AssignMessage defaults to failing on unresolved variables"
    );
    assert!(errors(r#"<AssignMessage name="P"><AssignVariable><Value>x</Value></AssignVariable></AssignMessage>"#)[0]
        .contains("needs a `<Name>`"));
}

#[test]
fn extract_variables() {
    let p = ok(r#"<ExtractVariables name="P">
        <Source clearPayload="true">request</Source><VariablePrefix>ev</VariablePrefix>
        <URIPath><Pattern ignoreCase="true">/accounts/{id}</Pattern></URIPath>
        <QueryParam name="code"><Pattern>DBN{dbncode}</Pattern></QueryParam>
        <Header name="Authorization"><Pattern>Bearer {token}</Pattern></Header>
        <FormParam name="f"><Pattern>{f}</Pattern></FormParam>
        <JSONPayload><Variable name="name" type="string"><JSONPath>$.name</JSONPath></Variable></JSONPayload>
        <XMLPayload stopPayloadProcessing="false"><Namespaces><Namespace prefix="a">urn:a</Namespace></Namespaces>
            <Variable name="x" type="nodeset"><XPath>/a:x</XPath></Variable></XMLPayload>
        <IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>
    </ExtractVariables>"#);
    let PolicyConfig::ExtractVariables(e) = p.config else {
        panic!()
    };
    let e: ExtractVariables = e;
    assert_eq!(e.source, "request");
    assert!(e.clear_payload && e.ignore_unresolved_variables);
    assert_eq!(e.output_name("id"), "ev.id");
    assert!(e.uri_paths[0].ignore_case);
    assert_eq!(
        e.uri_paths[0].pattern.variables().collect::<Vec<_>>(),
        ["id"]
    );
    assert_eq!(e.query_params[0].name, "code");
    assert_eq!(
        e.headers[0].patterns[0]
            .pattern
            .variables()
            .collect::<Vec<_>>(),
        ["token"]
    );
    assert_eq!(e.form_params.len(), 1);
    let json = e.json_payload.unwrap();
    assert_eq!(
        (
            json.variables[0].name.as_str(),
            json.variables[0].path.as_str()
        ),
        ("name", "$.name")
    );
    let xml = e.xml_payload.unwrap();
    assert_eq!(xml.namespaces, [("a".to_owned(), "urn:a".to_owned())]);
    assert_eq!(xml.variables[0].value_type.as_deref(), Some("nodeset"));
    let d = ok(
        r#"<ExtractVariables name="P"><URIPath><Pattern>/{a}</Pattern></URIPath></ExtractVariables>"#,
    );
    let PolicyConfig::ExtractVariables(d) = d.config else {
        panic!()
    };
    assert_eq!(d.source, "message");
    let (_, diags) = load(r#"<ExtractVariables name="P"/>"#);
    assert!(diags[0].message.contains("nothing to extract"));
}

#[test]
fn key_value_map_operations() {
    let p = ok(r#"<KeyValueMapOperations name="P" mapIdentifier="creds">
        <Scope>apiproxy</Scope><ExpiryTimeInSecs>60</ExpiryTimeInSecs>
        <InitialEntries><Entry><Key><Parameter>k</Parameter></Key><Value>v</Value></Entry></InitialEntries>
        <Get assignTo="private.secret" index="1"><Key><Parameter>secret</Parameter><Parameter ref="client_id"/></Key></Get>
        <Put override="true"><Key><Parameter>a</Parameter></Key><Value ref="b"/></Put>
        <Delete><Key><Parameter>old</Parameter></Key></Delete>
    </KeyValueMapOperations>"#);
    let PolicyConfig::KeyValueMapOperations(k) = p.config else {
        panic!()
    };
    let k: KeyValueMapOperations = k;
    assert_eq!(k.map_identifier.as_deref(), Some("creds"));
    assert_eq!(k.scope, KvmScope::ApiProxy);
    assert_eq!(k.expiry_time_in_secs, Some(60));
    assert_eq!(k.initial_entries[0].values, ["v"]);
    assert_eq!(k.operations.len(), 3);
    let KvmOperation::Get {
        assign_to,
        index,
        key,
    } = &k.operations[0]
    else {
        panic!()
    };
    assert_eq!((assign_to.as_str(), *index), ("private.secret", Some(1)));
    assert_eq!(key.parameters[1].reference.as_deref(), Some("client_id"));
    let KvmOperation::Put {
        override_existing,
        values,
        ..
    } = &k.operations[1]
    else {
        panic!()
    };
    assert!(*override_existing);
    assert_eq!(values[0].reference.as_deref(), Some("b"));
    assert!(matches!(k.operations[2], KvmOperation::Delete { .. }));
    assert!(
        errors(r#"<KeyValueMapOperations name="P"><Scope>galaxy</Scope></KeyValueMapOperations>"#)
            [0]
        .contains("invalid KVM scope")
    );
}

#[test]
fn flow_callout() {
    let p = ok(
        r#"<FlowCallout name="P"><SharedFlowBundle>common</SharedFlowBundle>
        <Parameters><Parameter name="x" ref="var"/><Parameter name="y" value="lit"/><Parameter name="z">text</Parameter></Parameters>
    </FlowCallout>"#,
    );
    let PolicyConfig::FlowCallout(f) = p.config else {
        panic!()
    };
    let f: FlowCallout = f;
    assert_eq!(f.shared_flow_bundle.as_deref(), Some("common"));
    assert_eq!(f.parameters[0].reference.as_deref(), Some("var"));
    assert_eq!(f.parameters[1].value.as_deref(), Some("lit"));
    assert_eq!(f.parameters[2].value.as_deref(), Some("text"));
    assert!(errors(r#"<FlowCallout name="P"/>"#)[0].contains("needs a `<SharedFlowBundle>`"));
}

#[test]
fn unsupported_types_and_unknown_elements_warn() {
    let (p, diags) = load(r#"<XSL name="P"><ResourceURL>xsl://a.xsl</ResourceURL></XSL>"#);
    let p = p.unwrap();
    assert_eq!(
        p.config,
        PolicyConfig::Unsupported {
            type_name: "XSL".into()
        }
    );
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].severity, Severity::Warning);
    let (_, diags) = load("<SpikeArrest name=\"P\">\n<Rate>1ps</Rate>\n<Bogus/></SpikeArrest>");
    assert_eq!(diags.len(), 1);
    assert_eq!(
        diags[0].to_string(),
        "policies/P.xml:3:1: warning: unknown element `<Bogus>` in `<SpikeArrest>`"
    );
}

#[test]
fn placeholders_warn_and_do_not_fail_parsing() {
    let (p, diags) = load(r#"<Quota name="P"><Interval>@INTERVAL@</Interval></Quota>"#);
    assert!(p.is_some());
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].severity, Severity::Warning);
    assert!(diags[0].message.contains("`@INTERVAL@`"));
    assert_eq!(diags[0].location.column, 27);
}

mod arbitrary {
    use crate::PolicyConfig;
    use crate::test_support::load;

    /// Arbitrary inputs over a JSON/XML-heavy alphabet never panic any scanner, converter,
    /// evaluator or decoder.
    #[test]
    fn arbitrary_inputs_never_panic() {
        use crate::format::{
            JsonToXmlOptions, XmlToJsonOptions, json_to_xml_text, xml_to_json_text,
        };
        let alphabet = b"{}[]\":,<>/=a1 \n?!-.&;'xmlns:e\\";
        let (PolicyConfig::JsonThreatProtection(j), _) = load(
            r#"<JSONThreatProtection name="J"><ContainerDepth>5</ContainerDepth><ArrayElementCount>3</ArrayElementCount>
           <ObjectEntryCount>3</ObjectEntryCount><StringValueLength>4</StringValueLength></JSONThreatProtection>"#,
        ) else {
            panic!()
        };
        let (PolicyConfig::XmlThreatProtection(x), _) = load(
            r#"<XMLThreatProtection name="X"><StructureLimits><NodeDepth>4</NodeDepth><ChildCount>3</ChildCount></StructureLimits>
           <ValueLimits><Text>4</Text></ValueLimits></XMLThreatProtection>"#,
        ) else {
            panic!()
        };
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 120) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = crate::protect::scan_json(&j, "J", &bytes);
            let _ = crate::protect::scan_xml(&x, "X", &bytes);
            let _ = xml_to_json_text(&bytes, &XmlToJsonOptions::default());
            let _ = json_to_xml_text(&bytes, &JsonToXmlOptions::default());
            let _ = crate::xpath::evaluate(&text, "//a", &[]);
            let _ = crate::xpath::evaluate("<a><b>1</b></a>", &text, &[]);
            let _ = crate::format::json_path(&serde_json::json!({"a":[1,{"b":2}]}), &text);
            let _ = crate::jwt::decode(&text);
            let _ = crate::jwt::parse_interval_ms(&text);
        }
    }
}
