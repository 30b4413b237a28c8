//! `sendguard check`: exit codes and the JSON shape of DESIGN.md.

use std::path::Path;
use std::process::Command;

fn check(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sendguard"))
        .arg("check")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run sendguard check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CLEAN: &str = "From: News <news@shop.test>\r\nTo: anna@customer.test\r\nSubject: Spring sale\r\n\r\nHello Anna, 50% off today.\r\n";
const LEAK: &str = "From: News <news@shop.test>\r\nTo: anna@customer.test\r\nSubject: Hallo {{ first_name }}\r\n\r\nHello.\r\n";

fn policies() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .display()
        .to_string()
}

#[test]
fn exit_codes_and_json() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("clean.eml"), CLEAN).unwrap();
    std::fs::write(d.path().join("leak.eml"), LEAK).unwrap();
    let p = policies();

    let (code, out, _) = check(&["--policies", &p, "--json", "clean.eml"], d.path());
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["file"], "clean.eml");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);

    let (code, out, _) = check(&["--policies", &p, "--json", "leak.eml"], d.path());
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["verdict"], "block");
    let f = &v["findings"][0];
    assert_eq!(f["location"], "subject");
    assert!(f["token"].as_str().unwrap().contains("first_name"), "{f}");
    for key in ["rule", "location", "token", "detail"] {
        assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
    }

    // Several files: one JSON object per line; one blocked file makes the exit code 1.
    let (code, out, _) = check(
        &["--policies", &p, "--json", "clean.eml", "leak.eml"],
        d.path(),
    );
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 2);

    // The human report names the verdict.
    let (code, out, _) = check(&["--policies", &p, "leak.eml"], d.path());
    assert_eq!(code, 1);
    assert!(out.contains("leak.eml: BLOCK"), "{out}");
}

#[test]
fn input_and_usage_errors_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let p = policies();
    let (code, _, err) = check(&["--policies", &p, "missing.eml"], d.path());
    assert_eq!(code, 2);
    assert!(err.contains("missing.eml"), "{err}");
    std::fs::write(d.path().join("empty.eml"), "").unwrap();
    let (code, _, err) = check(&["--policies", &p, "empty.eml"], d.path());
    assert_eq!(code, 2);
    assert!(err.contains("empty"), "{err}");
    let (code, _, _) = check(&[], d.path());
    assert_eq!(code, 2, "no file is a usage error");
    let (code, _, err) = check(&["--policies", "no-such-dir", "x.eml"], d.path());
    assert_eq!(code, 2);
    assert!(err.contains("no-such-dir"), "{err}");
}
