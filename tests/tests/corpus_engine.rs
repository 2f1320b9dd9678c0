//! Every real corpus bundle that passes `preflow check` builds into a gateway, and a few
//! requests run through each of its base paths to a response without panicking.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use preflow::{
    Client, Environment, Gateway, LoadOptions, Step, TargetConnection, TargetServer, load_path,
};

fn corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/apigee-corpus/bundles"))
        .find(|dir| dir.is_dir())
        .expect("the Apigee corpus beside the repository")
}

/// Bundle roots (`…/apiproxy` or `…/sharedflowbundle`) under `dir`.
fn roots(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 12 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        match p.file_name().and_then(|n| n.to_str()) {
            Some("apiproxy") => out.push(p),
            Some("sharedflowbundle") => {}
            _ => roots(&p, out, depth + 1),
        }
    }
}

#[test]
fn real_bundles_build_and_serve() {
    let corpus = corpus();
    let mut all = Vec::new();
    for repo in std::fs::read_dir(&corpus).unwrap().flatten() {
        if repo.path().ends_with("apigee__apigeelint") {
            continue;
        }
        roots(&repo.path(), &mut all, 0);
    }
    all.sort();
    let (mut built, mut requests, mut skipped) = (0, 0, 0);
    for root in &all {
        let loaded = load_path(root, &LoadOptions::default());
        if loaded.has_errors() {
            skipped += 1;
            continue;
        }
        // As a deployment would: the target servers the load balancers name exist.
        let mut env = Environment::new();
        for b in &loaded.bundles {
            for t in &b.target_endpoints {
                if let TargetConnection::Http(h) = &t.connection {
                    for s in h.load_balancer.iter().flat_map(|lb| &lb.servers) {
                        if env.find_target_server(&s.name).is_none() {
                            env = env.target_server(TargetServer::new(&s.name, "192.0.2.10", 80));
                        }
                    }
                }
            }
        }
        let gateway = match Gateway::builder().bundles(loaded).environment(env).build() {
            Ok(g) => g,
            Err(e) => panic!("{}: {e}", root.display()),
        };
        built += 1;
        let bases: Vec<String> = gateway.base_paths().map(|(p, _)| p.to_owned()).collect();
        for base in bases {
            for (method, suffix) in [("GET", "/x"), ("POST", "/token"), ("OPTIONS", "")] {
                let path = format!("{}{suffix}", base.trim_end_matches('/'));
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                let req = http::Request::builder()
                    .method(method)
                    .uri(&path)
                    .header("authorization", "Bearer unknown")
                    .header("content-type", "application/json")
                    .body(Bytes::from_static(b"{\"a\":1}"))
                    .unwrap();
                let mut ex = gateway.begin(
                    req,
                    Client::http("192.0.2.9:9".parse().unwrap()),
                    common::at(0.0),
                );
                let mut done = false;
                for _ in 0..16 {
                    match gateway.step(&mut ex) {
                        Step::Respond(r) => {
                            assert!(r.status().as_u16() >= 100, "{}", root.display());
                            done = true;
                            break;
                        }
                        Step::Forward(_) => {
                            ex.target_response(Ok(http::Response::new(Bytes::from_static(b"{}"))))
                        }
                        Step::Store(op) => {
                            panic!("{}: store op in local mode: {op:?}", root.display())
                        }
                        Step::ReadBody => {
                            panic!("{}: begin gave the whole request", root.display())
                        }
                        Step::Pause(_) => panic!("{}: no provider to wait for", root.display()),
                    }
                }
                assert!(done, "{} {method} {path}: no response", root.display());
                requests += 1;
            }
        }
    }
    println!(
        "{built} real API proxies built, {requests} requests served, {skipped} skipped (check errors)"
    );
    assert!(built >= 150, "only {built} bundles built");
    assert!(skipped <= 2, "{skipped} bundles skipped");
}
