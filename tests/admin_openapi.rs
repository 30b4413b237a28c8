//! `src/admin/openapi.json` against the real daemon: every documented path and method exists
//! and answers with a documented status (and the documented body), and every route the server
//! has is documented.

mod admin_common;
mod common;

use admin_common::{start_daemon, Api};
use hyper::Method;
use serde_json::Value;
use std::collections::BTreeSet;

fn spec() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/openapi.json");
    let text = std::fs::read_to_string(&path).expect("openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// A concrete request path for a template, with values that exist in the test daemon
/// (`incident`: an open incident's id; quarantine ids do not exist).
fn concrete(template: &str, incident: &str) -> String {
    let id = if template.starts_with("/v1/incidents/") {
        incident
    } else {
        "openapi-check"
    };
    template
        .replace("{scope}", "campaign")
        .replace("{id}", id)
        .replace("{address}", "someone@example.invalid")
}

/// Resolves `$ref` into `#/components/…`.
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut cur = spec;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part];
            }
            cur
        }
        None => v,
    }
}

#[test]
fn the_document_is_openapi_3_1_and_refs_resolve() {
    let s = spec();
    assert_eq!(s["openapi"], "3.1.0");
    assert!(s["info"]["title"].is_string());
    let text = serde_json::to_string(&s).unwrap();
    for part in text.split("\"$ref\":\"").skip(1) {
        let r = part.split('"').next().unwrap();
        let reference = serde_json::json!({ "$ref": r });
        assert!(resolve(&s, &reference).is_object(), "dangling $ref {r}");
    }
    for (path, item) in s["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("200"), "{method} {path}");
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    assert!(
                        path.contains(&format!("{{{}}}", p["name"].as_str().unwrap())),
                        "{method} {path}: path parameter {} not in the path",
                        p["name"]
                    );
                }
            }
        }
    }
}

#[test]
fn every_server_route_is_documented_and_nothing_else() {
    let s = spec();
    let documented: BTreeSet<(String, String)> = s["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served: BTreeSet<(String, String)> = sendguard::admin::ROUTES
        .iter()
        .flat_map(|r| {
            r.methods
                .iter()
                .map(|m| (m.to_string(), r.path.to_string()))
        })
        .collect();
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not documented"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_with_a_documented_status() {
    let s = spec();
    let (d, port) = start_daemon("");
    let api = Api::new(port);
    // Something to find for the GET of a suppression and the resume.
    let put = api
        .call(Method::PUT, "/v1/pauses/campaign/openapi-check", None)
        .await;
    assert_eq!(put.status, 200);
    // An incident, so that its operations answer with their documented bodies.
    let open = api
        .call(
            Method::POST,
            "/v1/incidents",
            Some(r#"{"campaign": "openapi-incident", "reason": "check"}"#),
        )
        .await;
    assert_eq!(open.status, 200, "{}", open.text());
    let incident = open.json()["id"].as_str().unwrap().to_string();
    let mut ops = Vec::new();
    for (path, item) in s["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((path.clone(), method.clone(), op.clone()));
        }
    }
    // Reads first, then writes, and a resume only after the pause above.
    ops.sort_by_key(|(_, m, _)| (m == "delete", m != "get"));
    for (path, method, op) in ops {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let documented: Vec<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        let url = concrete(&path, &incident);
        let body = op["requestBody"]["content"]
            .as_object()
            .and_then(|c| c.keys().next().cloned());
        let body = match body.as_deref() {
            Some("text/plain") => Some("imported@example.org\n"),
            Some(_) => Some("{}"),
            None => None,
        };
        let a = api.call(m.clone(), &url, body).await;
        let code = a.status.as_u16();
        assert!(
            documented.contains(&code),
            "{method} {url} answered {code} ({}), documented {documented:?}\n{}",
            a.text(),
            d.log()
        );
        let content = &op["responses"][code.to_string()]["content"];
        let ct = a
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let documented_ct = content.as_object().unwrap().keys().next().unwrap().clone();
        assert!(
            ct.starts_with(&documented_ct),
            "{method} {url}: {ct} vs {documented_ct}"
        );
        if documented_ct == "application/json" {
            let schema = resolve(&s, &content["application/json"]["schema"]);
            let body = a.json();
            for field in schema["required"].as_array().into_iter().flatten() {
                let f = field.as_str().unwrap();
                assert!(
                    body.get(f).is_some(),
                    "{method} {url}: missing {f} in {body}"
                );
            }
        }
        // Unauthenticated: 401 is documented wherever the operation needs the token.
        if op.get("security").is_none() {
            let anon = api.send(m.clone(), &url, None, &[], None).await;
            assert_eq!(anon.status, 401, "{method} {url}");
            assert!(documented.contains(&401));
        }
    }
}
