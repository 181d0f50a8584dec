//! The Argo CD health check (docs/argocd/health.lua) under a real Lua 5.4 interpreter.

#[test]
fn argocd_health_check_reports_ready_failing_and_progressing_objects() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("lua5.4")
        .arg(format!("{root}/tests/argocd/run.lua"))
        .arg(format!("{root}/docs/argocd/health.lua"))
        .output()
        .expect("lua5.4 is missing: run `make tools` (hack/setup-lua)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
}
