//! Tests of the JWT, protection, CORS, cache, callout/logging and format families.

use crate::xml::XmlLimits;
use crate::{PolicyConfig, Source, parse_policy};
use std::collections::HashMap;

const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
const EC256_PRIVATE: &str = include_str!("testdata/ec256_private.pem");
const EC256_PUBLIC: &str = include_str!("testdata/ec256_public.pem");
const EC384_PRIVATE: &str = include_str!("testdata/ec384_private.pem");
const EC384_PUBLIC: &str = include_str!("testdata/ec384_public.pem");

fn load(xml: &str) -> (PolicyConfig, Vec<crate::Diagnostic>) {
    let src = Source::new("p.xml", xml);
    let mut diags = Vec::new();
    let p = parse_policy(&src, &XmlLimits::default(), &mut diags).expect("policy");
    (p.config, diags)
}

fn jwt_cfg(xml: &str) -> crate::jwt::Jwt {
    let (cfg, diags) = load(xml);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    match cfg {
        PolicyConfig::Jwt(j) => *j,
        other => panic!("not a JWT policy: {other:?}"),
    }
}

struct Vars(HashMap<String, String>);

impl Vars {
    fn new(pairs: &[(&str, &str)]) -> Self {
        Vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<String> {
        self.0.get(k).cloned()
    }
}

mod jwt {
    use super::*;
    use crate::jwt::{JwtFault, JwtInputs, decode, generate, verify};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn inputs<'a>(vars: &'a Vars, now: u64) -> JwtInputs<'a> {
        JwtInputs {
            lookup: Box::leak(Box::new(move |n: &str| vars.get(n))),
            jwks_for_uri: &|_| None,
            now,
        }
    }

    fn gen_hs() -> crate::jwt::Jwt {
        jwt_cfg(
            r#"<GenerateJWT name="G">
              <Algorithm>HS256</Algorithm>
              <SecretKey><Value ref="private.key"/><Id>k1</Id></SecretKey>
              <Issuer>https://issuer.example</Issuer>
              <Subject ref="user"/>
              <Audience>app-1,app-2</Audience>
              <ExpiresIn>1h</ExpiresIn>
              <Id/>
              <AdditionalClaims>
                <Claim name="tier" ref="tier"/>
                <Claim name="n" type="number">42</Claim>
                <Claim name="roles" array="true">a,b</Claim>
              </AdditionalClaims>
              <AdditionalHeaders><Claim name="x-h">hv</Claim></AdditionalHeaders>
              <OutputVariable>out</OutputVariable>
            </GenerateJWT>"#,
        )
    }

    fn verify_hs(extra: &str) -> crate::jwt::Jwt {
        jwt_cfg(&format!(
            r#"<VerifyJWT name="V">
              <Algorithm>HS256</Algorithm>
              <Source>token</Source>
              <SecretKey><Value ref="private.key"/></SecretKey>
              {extra}
            </VerifyJWT>"#
        ))
    }

    fn token(now: u64) -> String {
        let vars = Vars::new(&[("private.key", SECRET), ("user", "alice"), ("tier", "gold")]);
        let g = generate(&gen_hs(), &inputs(&vars, now), "jti-1").unwrap();
        g.token
    }

    #[test]
    fn hs256_round_trip_sets_claims_and_headers() {
        let t = token(1_000_000);
        let vars = Vars::new(&[("private.key", SECRET), ("aud", "app-2")]);
        let cfg = verify_hs(
            r#"<Issuer>https://issuer.example</Issuer><Audience ref="aud"/>
               <AdditionalClaims><Claim name="tier">gold</Claim><Claim name="roles" array="true">b</Claim></AdditionalClaims>
               <AdditionalHeaders><Claim name="x-h">hv</Claim></AdditionalHeaders>"#,
        );
        let d = verify(&cfg, &t, &inputs(&vars, 1_000_010)).unwrap();
        assert_eq!(d.claims["sub"], "alice");
        assert_eq!(d.claims["n"], 42);
        assert_eq!(d.claims["jti"], "jti-1");
        assert_eq!(d.claims["exp"], 1_003_600);
        assert_eq!(d.header["kid"], "k1");
        let vars = d.variables(1_000_010);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("claim.subject").as_deref(), Some("alice"));
        assert_eq!(get("decoded.claim.tier").as_deref(), Some("gold"));
        assert_eq!(get("header.algorithm").as_deref(), Some("HS256"));
        assert_eq!(get("seconds_remaining").as_deref(), Some("3590"));
        assert_eq!(get("is_expired").as_deref(), Some("false"));
        assert_eq!(
            get("expiry_formatted").as_deref(),
            Some("1970-01-12T14:46:40Z")
        );
    }

    #[test]
    fn failures_name_the_claim_and_the_expected_value() {
        let t = token(1_000_000);
        let vars = Vars::new(&[("private.key", SECRET)]);
        let cases = [
            (
                "<Audience>mobile-app</Audience>",
                JwtFault::JwtAudienceMismatch,
                r#"audience mismatch: claim `aud` is ["app-1", "app-2"], expected it to contain `mobile-app`"#,
            ),
            (
                "<Issuer>https://other</Issuer>",
                JwtFault::JwtIssuerMismatch,
                "issuer mismatch: claim `iss` is `https://issuer.example`, expected `https://other`",
            ),
            (
                "<Subject>bob</Subject>",
                JwtFault::JwtSubjectMismatch,
                "subject mismatch: claim `sub` is `alice`, expected `bob`",
            ),
            (
                r#"<AdditionalClaims><Claim name="tier">silver</Claim></AdditionalClaims>"#,
                JwtFault::InvalidClaim,
                "claim `tier` is \"gold\", expected `silver`",
            ),
            (
                r#"<AdditionalClaims><Claim name="scope">read</Claim></AdditionalClaims>"#,
                JwtFault::InvalidClaim,
                "claim `scope` is absent, expected `read`",
            ),
        ];
        for (extra, fault, message) in cases {
            let err = verify(&verify_hs(extra), &t, &inputs(&vars, 1_000_001)).unwrap_err();
            assert_eq!(err.fault, fault, "{extra}");
            assert_eq!(err.message, message);
            assert_eq!(err.fault.status(), 401);
        }
    }

    #[test]
    fn time_checks_with_allowance() {
        let t = token(1_000_000);
        let vars = Vars::new(&[("private.key", SECRET)]);
        let err = verify(&verify_hs(""), &t, &inputs(&vars, 1_003_600)).unwrap_err();
        assert_eq!(err.fault, JwtFault::TokenExpired);
        assert!(
            err.message.contains("expired at 1970-01-12T14:46:40Z"),
            "{err}"
        );
        let lenient = verify_hs("<TimeAllowance>60s</TimeAllowance>");
        assert!(verify(&lenient, &t, &inputs(&vars, 1_003_630)).is_ok());
        // Issued in the future.
        let err = verify(&verify_hs(""), &t, &inputs(&vars, 999_000)).unwrap_err();
        assert_eq!(err.fault, JwtFault::InvalidClaim);
        assert!(err.message.contains("`iat` is in the future"), "{err}");
        assert!(
            verify(
                &verify_hs("<IgnoreIssuedAt>true</IgnoreIssuedAt>"),
                &t,
                &inputs(&vars, 999_000)
            )
            .is_ok()
        );
    }

    #[test]
    fn signature_algorithm_and_key_checks() {
        let t = token(1_000_000);
        let wrong = Vars::new(&[("private.key", "ffffffffffffffffffffffffffffffff")]);
        let err = verify(&verify_hs(""), &t, &inputs(&wrong, 1_000_001)).unwrap_err();
        assert_eq!(err.fault, JwtFault::InvalidSignature);
        let short = Vars::new(&[("private.key", "short")]);
        let err = verify(&verify_hs(""), &t, &inputs(&short, 1_000_001)).unwrap_err();
        assert_eq!(err.fault, JwtFault::InsufficientKeyLength);
        assert_eq!(err.fault.status(), 500);
        let rs = jwt_cfg(
            r#"<VerifyJWT name="V"><Algorithm>RS256</Algorithm><PublicKey><Value ref="pk"/></PublicKey></VerifyJWT>"#,
        );
        let vars = Vars::new(&[("pk", RSA_PUBLIC)]);
        let err = verify(&rs, &t, &inputs(&vars, 1_000_001)).unwrap_err();
        assert_eq!(err.fault, JwtFault::AlgorithmMismatch);
        assert_eq!(
            err.message,
            "the token is signed with `HS256`; the policy accepts RS256"
        );
        let mut tampered = t.clone();
        tampered.push('x');
        let vars = Vars::new(&[("private.key", SECRET)]);
        assert!(verify(&verify_hs(""), &tampered, &inputs(&vars, 1_000_001)).is_err());
        let err = verify(&verify_hs(""), "a.b", &inputs(&vars, 1)).unwrap_err();
        assert_eq!(err.fault, JwtFault::FailedToDecode);
    }

    fn asym(alg: &str, private: &str, public: &str) {
        let g = jwt_cfg(&format!(
            r#"<GenerateJWT name="G"><Algorithm>{alg}</Algorithm>
                 <PrivateKey><Value ref="private.pk"/><Id>kid-1</Id></PrivateKey>
                 <Issuer>iss</Issuer><ExpiresIn>300</ExpiresIn></GenerateJWT>"#
        ));
        let vars = Vars::new(&[("private.pk", private), ("pub", public)]);
        let t = generate(&g, &inputs(&vars, 100), "").unwrap().token;
        let v = jwt_cfg(&format!(
            r#"<VerifyJWT name="V"><Algorithm>{alg}</Algorithm><Source>t</Source>
                 <PublicKey><Value ref="pub"/></PublicKey><Issuer>iss</Issuer></VerifyJWT>"#
        ));
        let d = verify(&v, &t, &inputs(&vars, 200)).unwrap();
        assert_eq!(d.header["alg"], alg);
        assert_eq!(d.claims["exp"], 400);
        assert_eq!(
            verify(&v, &t, &inputs(&vars, 400)).unwrap_err().fault,
            JwtFault::TokenExpired
        );
    }

    #[test]
    fn rsa_pss_and_ecdsa() {
        for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            asym(alg, RSA_PRIVATE, RSA_PUBLIC);
        }
        asym("ES256", EC256_PRIVATE, EC256_PUBLIC);
        asym("ES384", EC384_PRIVATE, EC384_PUBLIC);
    }

    #[test]
    fn jwks_from_a_variable_and_from_a_uri() {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256)
                .unwrap();
        jwk.common.key_id = Some("kid-1".into());
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        let g = jwt_cfg(
            r#"<GenerateJWT name="G"><Algorithm>RS256</Algorithm>
                 <PrivateKey><Value ref="private.pk"/><Id ref="kid"/></PrivateKey></GenerateJWT>"#,
        );
        let vars = Vars::new(&[
            ("private.pk", RSA_PRIVATE),
            ("kid", "kid-1"),
            ("jwks", &jwks),
        ]);
        let t = generate(&g, &inputs(&vars, 100), "").unwrap().token;
        let v = jwt_cfg(
            r#"<VerifyJWT name="V"><Algorithm>RS256,PS256</Algorithm><Source>t</Source>
                 <PublicKey><JWKS ref="jwks"/></PublicKey></VerifyJWT>"#,
        );
        assert!(verify(&v, &t, &inputs(&vars, 101)).is_ok());
        let by_uri = jwt_cfg(
            r#"<VerifyJWT name="V"><Algorithm>RS256</Algorithm>
                 <PublicKey><JWKS uri="https://idp.example/jwks"/></PublicKey></VerifyJWT>"#,
        );
        let jwks2 = jwks.clone();
        let lookup = |n: &str| vars.get(n);
        let uri = move |u: &str| (u == "https://idp.example/jwks").then(|| jwks2.clone());
        let inp = JwtInputs {
            lookup: &lookup,
            jwks_for_uri: &uri,
            now: 101,
        };
        assert!(verify(&by_uri, &t, &inp).is_ok());
        // A kid the JWKS does not hold.
        let vars2 = Vars::new(&[
            ("private.pk", RSA_PRIVATE),
            ("kid", "other"),
            ("jwks", &jwks),
        ]);
        let t2 = generate(&g, &inputs(&vars2, 100), "").unwrap().token;
        let err = verify(&v, &t2, &inputs(&vars2, 101)).unwrap_err();
        assert_eq!(err.fault, JwtFault::NoMatchingPublicKey);
        assert!(err.message.contains("kid `other`"), "{err}");
    }

    #[test]
    fn decode_and_source() {
        let t = token(5);
        let d = decode(&t).unwrap();
        assert_eq!(d.claims["iss"], "https://issuer.example");
        let cfg = jwt_cfg(r#"<DecodeJWT name="D"/>"#);
        let bearer = format!("Bearer {t}");
        let vars = Vars::new(&[("request.header.authorization", &bearer)]);
        let got = crate::jwt::source_token(&cfg, &|n| vars.get(n)).unwrap();
        assert_eq!(got, t);
        let none = Vars::new(&[]);
        assert_eq!(
            crate::jwt::source_token(&cfg, &|n| none.get(n))
                .unwrap_err()
                .fault,
            JwtFault::FailedToDecode
        );
    }

    #[test]
    fn config_errors() {
        let (_, diags) = load(r#"<VerifyJWT name="V"><Algorithm>RS256</Algorithm></VerifyJWT>"#);
        assert!(
            diags
                .iter()
                .any(|d| d.is_error() && d.message.contains("`<PublicKey>`")),
            "{diags:?}"
        );
        let (_, diags) = load(r#"<GenerateJWT name="G"><Algorithm>XX1</Algorithm></GenerateJWT>"#);
        assert!(
            diags
                .iter()
                .any(|d| d.message.contains("unsupported JWT algorithm `XX1`")),
            "{diags:?}"
        );
        assert_eq!(crate::jwt::parse_interval_ms("1h"), Some(3_600_000));
        assert_eq!(crate::jwt::parse_interval_ms("250ms"), Some(250));
        assert_eq!(crate::jwt::parse_interval_ms("30"), Some(30_000));
        assert_eq!(crate::jwt::parse_interval_ms("3y"), None);
    }
}

mod protect {
    use super::*;
    use crate::protect::{JsonLimit, RegexInputs, XmlLimit, check_regex, scan_json, scan_xml};

    fn json_cfg(xml: &str) -> crate::protect::JsonThreatProtection {
        match load(xml).0 {
            PolicyConfig::JsonThreatProtection(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_limits_stop_at_the_first_exceeded_one() {
        let cfg = json_cfg(
            r#"<JSONThreatProtection name="J"><ArrayElementCount>3</ArrayElementCount>
               <ContainerDepth>3</ContainerDepth><ObjectEntryCount>2</ObjectEntryCount>
               <ObjectEntryNameLength>5</ObjectEntryNameLength><StringValueLength>4</StringValueLength>
               <Source>request</Source></JSONThreatProtection>"#,
        );
        assert!(scan_json(&cfg, "J", br#"{"a":[{"b":1}],"c":"abcd"}"#).is_ok());
        let cases: [(&[u8], JsonLimit); 5] = [
            (b"[[{\"a\":{}}]]", JsonLimit::ContainerDepth),
            (b"{\"a\":1,\"b\":2,\n\"c\":3}", JsonLimit::ObjectEntryCount),
            (b"[1,2,3,4]", JsonLimit::ArrayElementCount),
            (b"{\"abcdef\":1}", JsonLimit::ObjectEntryNameLength),
            (
                b"{\"a\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}",
                JsonLimit::StringValueLength,
            ),
        ];
        for (payload, limit) in cases {
            let err = scan_json(&cfg, "J", payload).unwrap_err();
            assert_eq!(
                err.limit,
                Some(limit),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        let err = scan_json(&cfg, "J", b"{\"a\":1,\"b\":2,\n\"c\":3}").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.message
                .starts_with("JSONThreatProtection[J]: Exceeded object entry count at line 2"),
            "{err}"
        );
        assert_eq!(err.fault_name(), "ExceededObjectEntryCount");
        let err = scan_json(&cfg, "J", b"{\"a\":").unwrap_err();
        assert_eq!(err.fault_name(), "ExecutionFailed");
        // "Stops at the first exceeded limit": a huge array fails at element 4, however
        // long the rest is, and the rest need not even be valid.
        let mut huge = b"[1,2,3,4".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 1_000));
        assert_eq!(
            scan_json(&cfg, "J", &huge).unwrap_err().limit,
            Some(JsonLimit::ArrayElementCount)
        );
        // No limit configured: only the scanner's depth bound applies.
        let open = json_cfg(
            r#"<JSONThreatProtection name="J"><ContainerDepth>-1</ContainerDepth></JSONThreatProtection>"#,
        );
        assert!(
            scan_json(
                &open,
                "J",
                &[b'['; 50]
                    .iter()
                    .chain([b']'; 50].iter())
                    .copied()
                    .collect::<Vec<_>>()
            )
            .is_ok()
        );
        assert!(scan_json(&open, "J", &vec![b'['; 100_000]).is_err());
    }

    #[test]
    fn xml_limits() {
        let PolicyConfig::XmlThreatProtection(cfg) = load(
            r#"<XMLThreatProtection name="X"><NameLimits><Element>5</Element><Attribute>4</Attribute>
                <NamespacePrefix>3</NamespacePrefix><ProcessingInstructionTarget>4</ProcessingInstructionTarget></NameLimits>
              <StructureLimits><NodeDepth>3</NodeDepth><AttributeCountPerElement>2</AttributeCountPerElement>
                <NamespaceCountPerElement>1</NamespaceCountPerElement>
                <ChildCount includeComment="false">3</ChildCount></StructureLimits>
              <ValueLimits><Text>5</Text><Attribute>3</Attribute><NamespaceURI>20</NamespaceURI>
                <Comment>4</Comment><ProcessingInstructionData>3</ProcessingInstructionData></ValueLimits>
            </XMLThreatProtection>"#,
        )
        .0
        else {
            panic!()
        };
        assert!(
            scan_xml(
                &cfg,
                "X",
                b"<a x=\"1\"><b>hi</b><!-- long comment? no --></a>"
            )
            .is_err()
        );
        assert!(scan_xml(&cfg, "X", b"<a x=\"1\"><b>hi</b><!--ok--><c/></a>").is_ok());
        let cases: [(&[u8], XmlLimit); 12] = [
            (b"<abcdef/>", XmlLimit::ElementName),
            (b"<a abcde=\"1\"/>", XmlLimit::AttributeName),
            (b"<abcd:a xmlns:abcd=\"u\"/>", XmlLimit::NamespacePrefix),
            (b"<a><b><c><d/></c></b></a>", XmlLimit::NodeDepth),
            (b"<a x=\"1\" y=\"2\" z=\"3\"/>", XmlLimit::AttributeCount),
            (b"<a xmlns=\"u\" xmlns:p=\"v\"/>", XmlLimit::NamespaceCount),
            (b"<a><b/><b/><b/><b/></a>", XmlLimit::ChildCount),
            (b"<a>toolong</a>", XmlLimit::Text),
            (b"<a x=\"long\"/>", XmlLimit::AttributeValue),
            (
                b"<a xmlns=\"http://example.com/very/long\"/>",
                XmlLimit::NamespaceUri,
            ),
            (b"<a><?abcde x?></a>", XmlLimit::PiTarget),
            (b"<a><?pi data?></a>", XmlLimit::PiData),
        ];
        for (payload, limit) in cases {
            let err = scan_xml(&cfg, "X", payload).unwrap_err();
            assert_eq!(
                err.limit,
                Some(limit),
                "{}: {err}",
                String::from_utf8_lossy(payload)
            );
        }
        let err = scan_xml(&cfg, "X", b"<a><b></a>").unwrap_err();
        assert_eq!(err.fault_name(), "ExecutionFailed");
        let err = scan_xml(&cfg, "X", b"<a>\n<abcdef/></a>").unwrap_err();
        assert!(
            err.message
                .contains("element name length exceeded (6), max 5 allowed, at line 2"),
            "{err}"
        );
    }

    #[test]
    fn regular_expressions() {
        let PolicyConfig::RegularExpressionProtection(cfg) = load(
            r#"<RegularExpressionProtection name="R">
                <Source>request</Source>
                <URIPath><Pattern>\.\./</Pattern></URIPath>
                <QueryParam name="q"><Pattern>[\s]*(?i)((delete)|(exec)|(drop\s*table))</Pattern></QueryParam>
                <Header name="x-a"><Pattern>(?&lt;=a)b</Pattern></Header>
                <Variable name="v"><Pattern>evil</Pattern></Variable>
                <JSONPayload><JSONPath><Expression>$.store.book[*].title</Expression><Pattern>script</Pattern></JSONPath></JSONPayload>
                <XMLPayload><Namespaces><Namespace prefix="s">urn:s</Namespace></Namespaces>
                  <XPath><Expression>/s:a/s:b</Expression><Type>string</Type><Pattern>&lt;script</Pattern></XPath></XMLPayload>
            </RegularExpressionProtection>"#,
        )
        .0
        else {
            panic!()
        };
        let vars = Vars::new(&[("v", "fine")]);
        let q = vec![("q".to_owned(), "select 1".to_owned())];
        let h = vec![("X-A".to_owned(), "cb".to_owned())];
        let base = RegexInputs {
            path: "/a/b",
            query: &q,
            headers: &h,
            form: &[],
            payload: None,
        };
        let lookup = |n: &str| vars.get(n);
        assert!(check_regex(&cfg, "R", &base, &lookup).is_ok());
        let err = check_regex(
            &cfg,
            "R",
            &RegexInputs {
                path: "/a/../etc",
                ..base
            },
            &lookup,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r"Regular Expression Threat Detected in R: regex: \.\./ input: uri path"
        );
        let bad_q = vec![("q".to_owned(), "x; DROP TABLE users".to_owned())];
        let err = check_regex(
            &cfg,
            "R",
            &RegexInputs {
                query: &bad_q,
                ..base
            },
            &lookup,
        )
        .unwrap_err();
        assert_eq!(err.fault_name(), "ThreatDetected");
        let bad_h = vec![("x-a".to_owned(), "ab".to_owned())];
        assert!(
            check_regex(
                &cfg,
                "R",
                &RegexInputs {
                    headers: &bad_h,
                    ..base
                },
                &lookup
            )
            .is_err()
        );
        let json = br#"{"store":{"book":[{"title":"ok"},{"title":"<script>"}]}}"#;
        let err = check_regex(
            &cfg,
            "R",
            &RegexInputs {
                payload: Some(json),
                ..base
            },
            &lookup,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("input: json path $.store.book[*].title"),
            "{err}"
        );
        let evil = Vars::new(&[("v", "so evil")]);
        assert!(check_regex(&cfg, "R", &base, &|n| evil.get(n)).is_err());
        assert_eq!(
            check_regex(&cfg, "R", &base, &|_| None)
                .unwrap_err()
                .fault_name(),
            "VariableResolutionFailed"
        );
    }

    #[test]
    fn regex_xpath_and_bad_patterns() {
        let PolicyConfig::RegularExpressionProtection(cfg) = load(
            r#"<RegularExpressionProtection name="R"><XMLPayload><Namespaces><Namespace prefix="s">urn:s</Namespace></Namespaces>
                  <XPath><Expression>/s:a/s:b</Expression><Pattern>script</Pattern></XPath></XMLPayload>
            </RegularExpressionProtection>"#,
        )
        .0
        else {
            panic!()
        };
        let base = RegexInputs {
            path: "/",
            query: &[],
            headers: &[],
            form: &[],
            payload: Some(b"<a xmlns=\"urn:s\"><b>javascript:x</b></a>"),
        };
        assert!(check_regex(&cfg, "R", &base, &|_| None).is_err());
        let ok = RegexInputs {
            payload: Some(b"<a xmlns=\"urn:s\"><b>fine</b></a>"),
            ..base
        };
        assert!(check_regex(&cfg, "R", &ok, &|_| None).is_ok());
        let (_, diags) = load(
            r#"<RegularExpressionProtection name="R"><URIPath><Pattern>(</Pattern></URIPath></RegularExpressionProtection>"#,
        );
        assert!(
            diags
                .iter()
                .any(|d| d.is_error() && d.message.contains("invalid regular expression"))
        );
        let (_, diags) = load(r#"<RegularExpressionProtection name="R"/>"#);
        assert!(diags.iter().any(|d| d.message.contains("NothingToEnforce")));
    }
}

mod cors {
    use super::*;
    use crate::cors::{CorsOutcome, CorsRequest, evaluate};

    fn cfg(xml: &str) -> crate::cors::Cors {
        match load(xml).0 {
            PolicyConfig::Cors(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn preflight_actual_and_denied() {
        let c = cfg(
            r#"<CORS name="C"><AllowOrigins>https://a.example, https://b.example</AllowOrigins>
               <AllowMethods>GET, POST</AllowMethods><AllowHeaders>content-type, x-key</AllowHeaders>
               <ExposeHeaders>x-total</ExposeHeaders><MaxAge>600</MaxAge><AllowCredentials>true</AllowCredentials></CORS>"#,
        );
        let pre = CorsRequest {
            method: "OPTIONS",
            origin: Some("https://b.example"),
            request_method: Some("POST"),
            request_headers: Some("X-Key"),
        };
        let CorsOutcome::Preflight(h) = evaluate(&c, &pre, &|_| None) else {
            panic!()
        };
        let get = |h: &[(String, String)], k: &str| {
            h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(&h, "Access-Control-Allow-Origin").as_deref(),
            Some("https://b.example")
        );
        assert_eq!(
            get(&h, "Access-Control-Allow-Methods").as_deref(),
            Some("GET, POST")
        );
        assert_eq!(get(&h, "Access-Control-Max-Age").as_deref(), Some("600"));
        assert_eq!(
            get(&h, "Access-Control-Allow-Credentials").as_deref(),
            Some("true")
        );
        let actual = CorsRequest {
            method: "GET",
            request_method: None,
            request_headers: None,
            ..pre
        };
        let CorsOutcome::Allowed(h) = evaluate(&c, &actual, &|_| None) else {
            panic!()
        };
        assert_eq!(
            get(&h, "Access-Control-Expose-Headers").as_deref(),
            Some("x-total")
        );
        assert!(matches!(
            evaluate(
                &c,
                &CorsRequest {
                    origin: Some("https://evil.example"),
                    ..actual
                },
                &|_| None
            ),
            CorsOutcome::Denied {
                preflight: false,
                ..
            }
        ));
        assert!(matches!(
            evaluate(
                &c,
                &CorsRequest {
                    request_method: Some("DELETE"),
                    ..pre
                },
                &|_| None
            ),
            CorsOutcome::Denied {
                preflight: true,
                ..
            }
        ));
        assert_eq!(
            evaluate(
                &c,
                &CorsRequest {
                    origin: None,
                    ..actual
                },
                &|_| None
            ),
            CorsOutcome::NotCors
        );
    }

    #[test]
    fn defaults_echo_the_origin() {
        let c = cfg(r#"<CORS name="C"/>"#);
        let req = CorsRequest {
            method: "GET",
            origin: Some("https://x.example"),
            request_method: None,
            request_headers: None,
        };
        let vars = Vars::new(&[("request.header.origin", "https://x.example")]);
        let CorsOutcome::Allowed(h) = evaluate(&c, &req, &|n| vars.get(n)) else {
            panic!()
        };
        assert_eq!(
            h[0],
            (
                "Access-Control-Allow-Origin".into(),
                "https://x.example".into()
            )
        );
        let (_, diags) =
            load(r#"<CORS name="C"><AllowOrigins>*, https://a.example</AllowOrigins></CORS>"#);
        assert!(diags.iter().any(|d| d.is_error()));
    }
}

mod cache {
    use super::*;
    use crate::cache::{
        CacheLimits, CachedValue, MemoryCache, ScopeContext, build_key, response_header_ttl,
    };

    #[test]
    fn keys_scopes_and_expiry() {
        let PolicyConfig::PopulateCache(p) = load(
            r#"<PopulateCache name="P"><CacheKey><Prefix>tok</Prefix><KeyFragment ref="client_id"/><KeyFragment>v1</KeyFragment></CacheKey>
               <Scope>Global</Scope><Source>token</Source><ExpirySettings><TimeoutInSec ref="ttl">60</TimeoutInSec></ExpirySettings></PopulateCache>"#,
        )
        .0
        else {
            panic!()
        };
        let vars = Vars::new(&[("client_id", "abc")]);
        let scope = ScopeContext {
            organization: "org",
            environment: "test",
            proxy: "p",
            revision: "1",
            proxy_endpoint: "default",
            target_endpoint: None,
        };
        assert_eq!(
            build_key(&p.common, &scope, &|n| vars.get(n), &[]).unwrap(),
            "tok__abc__v1"
        );
        assert_eq!(p.expiry.expires_at(100, &|n| vars.get(n)), 160);
        let ttl = Vars::new(&[("ttl", "5")]);
        assert_eq!(p.expiry.expires_at(100, &|n| ttl.get(n)), 105);
        let PolicyConfig::LookupCache(l) = load(
            r#"<LookupCache name="L"><CacheKey><KeyFragment ref="client_id"/></CacheKey><AssignTo>out</AssignTo></LookupCache>"#,
        )
        .0
        else {
            panic!()
        };
        assert_eq!(
            build_key(&l.common, &scope, &|n| vars.get(n), &[]).unwrap(),
            "org__test__p__1__default__abc"
        );
        let PolicyConfig::ResponseCache(r) = load(
            r#"<ResponseCache name="R"><CacheKey><KeyFragment ref="request.uri"/></CacheKey>
               <ExpirySettings><TimeOfDay>14:30:00</TimeOfDay></ExpirySettings>
               <SkipCacheLookup>request.header.nocache = "true"</SkipCacheLookup></ResponseCache>"#,
        )
        .0
        else {
            panic!()
        };
        assert_eq!(r.expiry.expires_at(0, &|_| None), 14 * 3600 + 1800);
        let date =
            crate::cache::Expiry::ExpiryDate(crate::Setting::literal("01-02-1970".to_owned()));
        assert_eq!(date.expires_at(0, &|_| None), 2 * 86_400);
        let absurd = crate::cache::Expiry::ExpiryDate(crate::Setting::literal(
            "01-01-99999999999999999".to_owned(),
        ));
        assert_eq!(
            absurd.expires_at(7, &|_| None),
            7 + crate::cache::DEFAULT_TIMEOUT_SECS
        );
        assert_eq!(
            r.expiry.expires_at(86_400 + 15 * 3600, &|_| None),
            2 * 86_400 + 14 * 3600 + 1800
        );
        assert!(r.skip_cache_lookup.is_some());
        let (_, diags) = load(
            r#"<ResponseCache name="R"><CacheKey/><SkipCacheLookup>a = </SkipCacheLookup></ResponseCache>"#,
        );
        assert!(
            diags
                .iter()
                .any(|d| d.is_error() && d.message.contains("SkipCacheLookup"))
        );
    }

    #[test]
    fn memory_cache_expires_and_evicts() {
        let c = MemoryCache::new(CacheLimits {
            max_entries: 2,
            max_bytes: 1_000,
            max_value_bytes: 100,
        });
        assert!(c.put("r", "a", CachedValue::Text("1".into()), 10, 0));
        assert!(c.put("r", "b", CachedValue::Text("2".into()), 10, 0));
        assert_eq!(c.get("r", "a", 5), Some(CachedValue::Text("1".into())));
        // "b" is now least recently used and goes first.
        assert!(c.put("r", "c", CachedValue::Text("3".into()), 10, 0));
        assert_eq!(c.get("r", "b", 5), None);
        assert!(c.get("r", "a", 5).is_some());
        assert_eq!(c.get("r", "a", 10), None, "expired");
        assert!(!c.put("r", "big", CachedValue::Text("x".repeat(200)), 10, 0));
        assert!(c.put("r", "pre1", CachedValue::Text("x".into()), 10, 0));
        assert_eq!(c.invalidate("r", "pre", true), 1);
        assert_eq!(c.get("other", "c", 5), None);
        assert_eq!(
            response_header_ttl(&[("Cache-Control".into(), "public, max-age=30".into())]),
            Some(30)
        );
        assert_eq!(
            response_header_ttl(&[("cache-control".into(), "no-store".into())]),
            Some(0)
        );
    }
}

mod service {
    use super::*;
    use crate::service::{
        CalloutConnection, CaptureInputs, capture_values, collect_statistics, log_records,
    };

    #[test]
    fn service_callout_config() {
        let PolicyConfig::ServiceCallout(sc) = load(
            r#"<ServiceCallout name="SC"><Request variable="myReq" clearPayload="true">
                 <Set><Verb>POST</Verb><Headers><Header name="x-a">{client_id}</Header></Headers></Set>
                 <IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables></Request>
               <Response>calloutResponse</Response><Timeout>3000</Timeout>
               <HTTPTargetConnection><URL>https://api.example/{path}</URL></HTTPTargetConnection></ServiceCallout>"#,
        )
        .0
        else {
            panic!()
        };
        let req = sc.request.as_ref().unwrap();
        assert_eq!(req.variable.as_deref(), Some("myReq"));
        assert!(req.clear_payload && req.ignore_unresolved_variables);
        assert!(req.ops.set.as_ref().unwrap().verb.is_some());
        assert_eq!(sc.response.as_deref(), Some("calloutResponse"));
        assert_eq!(sc.timeout_ms, Some(3000));
        let Some(CalloutConnection::Http { url, .. }) = &sc.connection else {
            panic!()
        };
        assert_eq!(
            url.render(|n| (n == "path").then(|| "v1".to_owned())),
            "https://api.example/v1"
        );
        let (_, diags) = load(r#"<ServiceCallout name="SC"/>"#);
        assert!(diags.iter().any(|d| d.is_error()));
    }

    #[test]
    fn logging_statistics_capture_assert() {
        let PolicyConfig::MessageLogging(ml) = load(
            r#"<MessageLogging name="ML"><CloudLogging><LogName>projects/p/logs/{env}</LogName>
               <Message contentType="application/json">{"id":"{messageid}"}</Message></CloudLogging></MessageLogging>"#,
        )
        .0
        else {
            panic!()
        };
        let vars = Vars::new(&[("env", "test"), ("messageid", "m-1"), ("tier", "gold")]);
        let recs = log_records(&ml, "ML", &|n| vars.get(n));
        assert_eq!(recs[0].message, r#"{"id":"m-1"}"#);
        assert_eq!(recs[0].log_name.as_deref(), Some("projects/p/logs/test"));
        let PolicyConfig::StatisticsCollector(sc) = load(
            r#"<StatisticsCollector name="S"><Statistics><Statistic name="tier" ref="tier" type="STRING">none</Statistic>
               <Statistic name="x" ref="missing" type="STRING">dflt</Statistic><Statistic name="y" ref="missing"/></Statistics></StatisticsCollector>"#,
        )
        .0
        else {
            panic!()
        };
        assert_eq!(
            collect_statistics(&sc, &|n| vars.get(n)),
            vec![
                ("statistics.tier".to_owned(), "gold".to_owned()),
                ("statistics.x".to_owned(), "dflt".to_owned())
            ]
        );
        let PolicyConfig::DataCapture(dc) = load(
            r#"<DataCapture name="D"><Capture><DataCollector>dc_tier</DataCollector><Collect ref="tier" default="n"/></Capture>
               <Capture><DataCollector>dc_id</DataCollector><Collect><URIPath><Pattern>/items/{id}</Pattern></URIPath></Collect></Capture>
               <Capture><DataCollector>dc_q</DataCollector><Collect default="none"><QueryParam name="q"><Pattern>{q}</Pattern></QueryParam></Collect></Capture>
            </DataCapture>"#,
        )
        .0
        else {
            panic!()
        };
        let inputs = CaptureInputs {
            path_suffix: "/items/42",
            query: &[],
            headers: &[],
            payload: None,
        };
        assert_eq!(
            capture_values(&dc, &inputs, &|n| vars.get(n)),
            vec![
                ("dc_tier".to_owned(), "gold".to_owned()),
                ("dc_id".to_owned(), "42".to_owned()),
                ("dc_q".to_owned(), "none".to_owned())
            ]
        );
        let PolicyConfig::AssertCondition(a) =
            load(r#"<AssertCondition name="A"><Condition>a = "b"</Condition></AssertCondition>"#).0
        else {
            panic!()
        };
        assert_eq!(a.condition, r#"a = "b""#);
        let (_, diags) =
            load(r#"<AssertCondition name="A"><Condition>a = </Condition></AssertCondition>"#);
        assert!(diags.iter().any(|d| d.is_error()));
    }
}

mod format {
    use super::*;
    use crate::format::{
        JsonToXmlOptions, XmlToJsonOptions, json_path, json_to_xml_text, xml_to_json_text,
    };

    #[test]
    fn xml_to_json_defaults() {
        let o = XmlToJsonOptions::default();
        let xml = br#"<?xml version="1.0"?><root a="1"><item>x</item><item>y</item><n>42</n><e/><t b="2">txt</t></root>"#;
        let json: serde_json::Value =
            serde_json::from_str(&xml_to_json_text(xml, &o).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"root":{"@a":"1","item":["x","y"],"n":"42","e":"","t":{"@b":"2","#text":"txt"}}})
        );
        let o = XmlToJsonOptions {
            recognize_number: true,
            recognize_boolean: true,
            recognize_null: true,
            attribute_block_name: Some("attrs".into()),
            treat_as_array: vec![("/root/n".into(), false)],
            strip_levels: 1,
            ..XmlToJsonOptions::default()
        };
        let xml = br#"<root a="1"><n>42</n><b>true</b><z>007</z><e/></root>"#;
        let json: serde_json::Value =
            serde_json::from_str(&xml_to_json_text(xml, &o).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"attrs":{"a":1},"n":[42],"b":true,"z":"007","e":null})
        );
        assert!(xml_to_json_text(b"<a><b></a>", &XmlToJsonOptions::default()).is_err());
        let deep = "<a>".repeat(200) + &"</a>".repeat(200);
        assert_eq!(
            xml_to_json_text(deep.as_bytes(), &XmlToJsonOptions::default()),
            Err(crate::format::ConvertError::TooDeep)
        );
    }

    #[test]
    fn json_to_xml_defaults() {
        let o = JsonToXmlOptions::default();
        assert_eq!(
            json_to_xml_text(br#"{"a":{"b":[1,2],"c":null,"d":"x<y"}}"#, &o).unwrap(),
            r#"<?xml version="1.0" encoding="UTF-8"?><a><b>1</b><b>2</b><c></c><d>x&lt;y</d></a>"#
        );
        assert_eq!(
            json_to_xml_text(br#"{"a":1,"b":2}"#, &o).unwrap(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Root><a>1</a><b>2</b></Root>"#
        );
        assert_eq!(
            json_to_xml_text(br#"[1,[2]]"#, &o).unwrap(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Array><Item>1</Item><Item><Item>2</Item></Item></Array>"#
        );
        let o = JsonToXmlOptions {
            attribute_prefix: Some("@".into()),
            text_node_name: Some("#text".into()),
            ..JsonToXmlOptions::default()
        };
        assert_eq!(
            json_to_xml_text(br##"{"a":{"@id":"1","#text":"hi","1bad":true}}"##, &o).unwrap(),
            r#"<?xml version="1.0" encoding="UTF-8"?><a id="1">hi<_bad>true</_bad></a>"#
        );
        assert!(json_to_xml_text(b"{", &o).is_err());
        // Document order is kept both ways.
        assert_eq!(
            json_to_xml_text(br#"{"z":{"b":1,"a":2}}"#, &JsonToXmlOptions::default()).unwrap(),
            r#"<?xml version="1.0" encoding="UTF-8"?><z><b>1</b><a>2</a></z>"#
        );
        assert_eq!(
            xml_to_json_text(b"<z><b>1</b><a>2</a></z>", &XmlToJsonOptions::default()).unwrap(),
            r#"{"z":{"b":"1","a":"2"}}"#
        );
    }

    #[test]
    fn predefined_formats() {
        let PolicyConfig::XmlToJson(x) = load(
            r#"<XMLToJSON name="X"><Format>yahoo</Format><Options><TextNodeName>t</TextNodeName></Options></XMLToJSON>"#,
        )
        .0
        else {
            panic!()
        };
        assert!(x.options.recognize_number && x.options.recognize_boolean);
        assert_eq!(x.options.text_node_name, "t", "Options override the format");
        let json = xml_to_json_text(br#"<a id="1"><n>5</n><b>true</b></a>"#, &x.options).unwrap();
        assert_eq!(json, r#"{"a":{"id":1,"n":5,"b":true}}"#);
        let (_, diags) = load(r#"<XMLToJSON name="X"><Format>nope</Format></XMLToJSON>"#);
        assert!(
            diags
                .iter()
                .any(|d| d.is_error() && d.message.contains("`nope`"))
        );
        let bf = XmlToJsonOptions::preset("badgerFish").unwrap();
        let json = xml_to_json_text(br#"<a xmlns="urn:x">hi</a>"#, &bf).unwrap();
        assert_eq!(json, r#"{"a":{"@xmlns":{"$":"urn:x"},"$":"hi"}}"#);
    }

    #[test]
    fn configs_load() {
        let PolicyConfig::XmlToJson(x) = load(
            r#"<XMLToJSON name="X"><Source>response</Source><OutputVariable>response</OutputVariable>
               <Options><RecognizeNumber>true</RecognizeNumber><TextNodeName>TEXT</TextNodeName>
               <TreatAsArray><Path unwrap="true">/a/b</Path></TreatAsArray></Options></XMLToJSON>"#,
        )
        .0
        else {
            panic!()
        };
        assert!(x.options.recognize_number);
        assert_eq!(x.options.text_node_name, "TEXT");
        assert_eq!(x.options.treat_as_array, vec![("/a/b".to_owned(), true)]);
        let PolicyConfig::JsonToXml(j) = load(
            r#"<JSONToXML name="J"><Options><ObjectRootElementName>Doc</ObjectRootElementName></Options></JSONToXML>"#,
        )
        .0
        else {
            panic!()
        };
        assert_eq!(j.options.object_root_element_name, "Doc");
        assert_eq!(j.options.array_item_element_name, "Item");
    }

    #[test]
    fn json_paths() {
        let v = serde_json::json!({"a":{"b":[{"c":1},{"c":2}]},"x":{"c":3}});
        let got: Vec<String> = json_path(&v, "$.a.b[*].c")
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(got, ["1", "2"]);
        assert_eq!(json_path(&v, "$.a.b[-1].c").unwrap()[0], 2);
        assert_eq!(json_path(&v, "$['x']['c']").unwrap()[0], 3);
        assert_eq!(json_path(&v, "$..c").unwrap().len(), 3);
        assert!(json_path(&v, "$.a[?(@.c)]").is_err());
    }

    #[test]
    fn xpath_with_namespaces() {
        let xml = r#"<s:Envelope xmlns:s="urn:soap"><s:Body><m:r xmlns:m="urn:m"><m:id>7</m:id><m:id>8</m:id></m:r></s:Body></s:Envelope>"#;
        let ns = vec![
            ("soap".to_owned(), "urn:soap".to_owned()),
            ("x".to_owned(), "urn:m".to_owned()),
        ];
        let v = crate::xpath::evaluate(xml, "/soap:Envelope/soap:Body/x:r/x:id", &ns).unwrap();
        assert_eq!(v.strings(), ["7", "8"]);
        assert_eq!(
            crate::xpath::evaluate(xml, "count(//x:id)", &ns)
                .unwrap()
                .first()
                .as_deref(),
            Some("2")
        );
        assert!(crate::xpath::evaluate(xml, "/a[", &ns).is_err());
        assert!(crate::xpath::evaluate("<a>", "/a", &ns).is_err());
    }
}

/// Arbitrary inputs over a JSON/XML-heavy alphabet never panic any scanner, converter,
/// evaluator or decoder.
#[test]
fn arbitrary_inputs_never_panic() {
    use crate::format::{JsonToXmlOptions, XmlToJsonOptions, json_to_xml_text, xml_to_json_text};
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
