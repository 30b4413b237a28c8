//! `sendguard pause | resume | status | suppress` against the real daemon.

mod admin_common;
mod common;

use std::process::{Command, Output};

fn sendguard(port: u16, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sendguard"));
    cmd.args(args)
        .arg("--admin")
        .arg(format!("http://127.0.0.1:{port}"))
        .env("USER", "opsuser")
        .env_remove("SENDGUARD_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("SENDGUARD_ADMIN_TOKEN", t);
    }
    cmd.output().expect("run sendguard")
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn pause_status_resume_with_ramp() {
    let (_d, port) = admin_common::start_daemon("");
    let t = Some(admin_common::TOKEN);
    let out = ok(&sendguard(
        port,
        t,
        &[
            "pause",
            "--campaign",
            "spring-sale",
            "--reason",
            "FirstName leaked",
            "--ttl",
            "2h",
        ],
    ));
    assert!(out.contains("paused campaign spring-sale until "), "{out}");
    assert!(
        out.contains("FirstName leaked (by opsuser via admin)"),
        "{out}"
    );

    let out = ok(&sendguard(port, t, &["status"]));
    assert!(out.contains("PAUSED"), "{out}");
    assert!(out.contains("campaign spring-sale"), "{out}");
    assert!(out.contains("FirstName leaked"), "{out}");
    assert!(out.contains("no ramps"), "{out}");

    let out = ok(&sendguard(port, t, &["status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
    assert_eq!(v["pauses"][0]["id"], "spring-sale");
    assert_eq!(v["pauses"][0]["actor"], "opsuser via admin");

    let out = ok(&sendguard(
        port,
        t,
        &[
            "resume",
            "--campaign",
            "spring-sale",
            "--ramp",
            "10/s..500/s/30m",
        ],
    ));
    assert!(
        out.contains("resumed campaign spring-sale on ramp"),
        "{out}"
    );
    let out = ok(&sendguard(port, t, &["status"]));
    assert!(out.contains("no pauses"), "{out}");

    // Resuming again: the daemon says it is not paused; one line, exit 1.
    let err = fails(
        &sendguard(port, t, &["resume", "--campaign", "spring-sale"]),
        1,
    );
    assert!(
        err.contains("campaign spring-sale is not paused (404)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Global and sender scopes, JSON output.
    let out = ok(&sendguard(
        port,
        t,
        &["pause", "--sender", "@news.example.com", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["scope"], "sender");
    assert_eq!(v["id"], "@news.example.com");
    ok(&sendguard(
        port,
        t,
        &["pause", "--global", "--reason", "drill"],
    ));
    ok(&sendguard(port, t, &["resume", "--global"]));
    ok(&sendguard(
        port,
        t,
        &["resume", "--sender", "@news.example.com"],
    ));
}

#[test]
fn errors_and_exit_codes() {
    let (_d, port) = admin_common::start_daemon("");
    let t = Some(admin_common::TOKEN);
    // No token, wrong token: the request fails (1) with the API's error.
    let err = fails(&sendguard(port, None, &["status"]), 1);
    assert!(err.starts_with("sendguard: missing admin token"), "{err}");
    let err = fails(&sendguard(port, Some("nope"), &["status"]), 1);
    assert!(err.contains("wrong admin token (401)"), "{err}");
    // Usage errors: 2.
    fails(&sendguard(port, t, &["pause"]), 2);
    fails(
        &sendguard(port, t, &["pause", "--campaign", "a", "--global"]),
        2,
    );
    let err = fails(
        &sendguard(port, t, &["resume", "--campaign", "a", "--ramp", "fast"]),
        2,
    );
    assert!(err.contains("expected FROM..TO/OVER"), "{err}");
    let err = fails(
        &sendguard(port, t, &["suppress", "import", "/nonexistent/list.txt"]),
        2,
    );
    assert!(err.contains("cannot open"), "{err}");
    // A value the daemon refuses: the request failed (1), with its reason.
    let err = fails(
        &sendguard(port, t, &["pause", "--campaign", "a", "--ttl", "soon"]),
        1,
    );
    assert!(err.contains("ttl \"soon\""), "{err}");
    // Nobody listening.
    let closed = common::free_port();
    let err = fails(&sendguard(closed, t, &["status"]), 1);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Help works everywhere.
    for cmd in ["pause", "resume", "status", "suppress"] {
        let out = ok(&sendguard(port, t, &[cmd, "--help"]));
        assert!(out.contains("--admin"), "{cmd}: {out}");
    }
}

#[test]
fn suppress_add_check_remove_import() {
    let (d, port) = admin_common::start_daemon("");
    let t = Some(admin_common::TOKEN);
    let out = ok(&sendguard(
        port,
        t,
        &["suppress", "add", "Dora@Example.org", "@spam.example"],
    ));
    assert!(out.contains("added"), "{out}");
    let out = ok(&sendguard(
        port,
        t,
        &[
            "suppress",
            "check",
            "dora@example.org",
            "x@spam.example",
            "ok@example.org",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].contains("dora@example.org") && lines[1].contains(" suppressed"),
        "{out}"
    );
    assert!(lines[2].contains("@spam.example"), "{out}");
    assert!(lines[3].contains("not suppressed"), "{out}");
    let out = ok(&sendguard(
        port,
        t,
        &["suppress", "remove", "dora@example.org"],
    ));
    assert!(out.contains("removed"), "{out}");
    let out = ok(&sendguard(
        port,
        t,
        &["suppress", "check", "dora@example.org", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["suppressed"], false);

    let list = d.path("list.txt");
    std::fs::write(
        &list,
        "# list\na@imp.example\nb@imp.example\n@whole.example\nbroken\n",
    )
    .unwrap();
    let out = ok(&sendguard(
        port,
        t,
        &["suppress", "import", list.to_str().unwrap()],
    ));
    assert!(out.contains("imported 3 entries"), "{out}");
    assert!(out.contains("1 malformed"), "{out}");
    let out = ok(&sendguard(port, t, &["suppress", "check", "B@imp.example"]));
    assert!(out.contains(" suppressed"), "{out}");
}
