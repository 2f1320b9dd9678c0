//! Unit tests of the jwt family.

use crate::jwt::{JwtFault, JwtInputs, decode, generate, verify};
use crate::test_support::*;

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
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
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
