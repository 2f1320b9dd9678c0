//! Unit tests of the service family.

use crate::service::{
    CalloutConnection, CaptureInputs, capture_values, collect_statistics, log_records,
};
use crate::test_support::*;

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
