//! The control plane every other test stands on: built from Go modules, cached by version,
//! serving the pinned Kubernetes version, and refusing bad input without leaving processes.

mod support;

use std::process::Command;

use support::{REPO, kubeconfig, kubectl_path};

fn kubectl(args: &[&str]) -> String {
    let out = Command::new(kubectl_path())
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn apiserver_is_ready_and_serves_the_pinned_version() {
    assert_eq!(kubectl(&["get", "--raw", "/readyz"]).trim(), "ok");
    let version: serde_json::Value =
        serde_json::from_str(&kubectl(&["version", "-o", "json"])).expect("json");
    let pinned =
        std::fs::read_to_string(format!("{REPO}/hack/versions.env")).expect("versions.env");
    let pinned = pinned
        .lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION="))
        .expect("K8S_VERSION");
    assert_eq!(version["serverVersion"]["gitVersion"], pinned);
}

#[test]
fn second_build_reuses_the_cached_binaries() {
    let out = Command::new(format!("{REPO}/hack/build-control-plane"))
        .output()
        .expect("build-control-plane");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("etcd v3.6.16 cached"), "{log}");
    assert!(
        log.contains("kube-controller-manager v1.35.4 cached"),
        "{log}"
    );
    assert!(!log.contains("building"), "nothing rebuilt: {log}");
}

#[test]
fn a_port_in_use_stops_with_advice_and_leaves_nothing_running() {
    // Bind port 0 and keep the listener: asking free_port() first and binding after it left
    // a window in which another process could take the port (seen once, with AddrInUse).
    let busy = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(format!("{REPO}/hack/control-plane"))
        .arg("up")
        .env("FTO_CP_DIR", dir.path())
        .env("FTO_APISERVER_PORT", port.to_string())
        .output()
        .expect("control-plane up");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "port {port} (FTO_APISERVER_PORT) is already in use"
        )),
        "{stderr}"
    );
    // etcd was started before the port check failed... or not at all: either way no pid is alive.
    for component in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        let pid_file = dir.path().join(format!("{component}.pid"));
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let alive = Command::new("kill")
                .args(["-0", pid.trim()])
                .status()
                .expect("kill")
                .success();
            assert!(!alive, "{component} left running");
        }
    }
}
