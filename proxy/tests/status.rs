//! The admin status page against the real binary: `GET /api/status` shows the upstreams, the
//! process (config digest, reloads, workers) and the local vrrp as vrrp's own writer leaves its
//! status file; `GET /` is the self-contained page.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Proxy};
use vrrp::daemon::status::{self as vrrp_status, InstanceStatus, PeerStatus, Status, VipStatus};

fn status_json(p: &Proxy) -> serde_json::Value {
    let r = p.admin_get("/api/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("JSON")
}

fn vrrp_file(dir: &std::path::Path, state: &str) {
    let st = Status {
        pid: std::process::id(),
        router_id: "server1".into(),
        config: "/etc/vrrp/vrrp.toml".into(),
        updated_ms: 1,
        anycast: None,
        instance: vec![InstanceStatus {
            name: "VI_1".into(),
            interface: "ens33".into(),
            vrid: 51,
            state: state.into(),
            reason: "preempted a lower-priority master".into(),
            priority: 150,
            base_priority: 150,
            master: Some("172.16.249.101".into()),
            peers: vec![PeerStatus {
                address: "172.16.249.102".into(),
                priority: 100,
                last_advert_ms: 5,
                age_ms: 0,
            }],
            vips: vec![VipStatus {
                address: "172.16.249.80/24".into(),
                on_interface: true,
            }],
            ..Default::default()
        }],
    };
    vrrp_status::write(dir, &st).expect("vrrp writes its status");
}

#[test]
fn api_status_shows_upstreams_process_and_vrrp() {
    let (a, b) = (Backend::page("a"), Backend::page("b"));
    let vrrp_dir = common::temp_dir("vrrp-run");
    vrrp_file(&vrrp_dir, "MASTER");
    let status_path = vrrp_status::status_path(&vrrp_dir);
    let top = format!("vrrp_status = \"{}\"", status_path.display());
    let upstream = common::servers(&[&a, &b]);
    let p = Proxy::start(&top, &upstream, "");
    for _ in 0..4 {
        assert_eq!(p.get("/").status, 200);
    }
    // Workers publish their peers a few times a second.
    std::thread::sleep(Duration::from_millis(400));
    let s = status_json(&p);

    let servers = s["upstreams"][0]["servers"].as_array().expect("servers");
    let addrs: Vec<&str> = servers
        .iter()
        .filter_map(|v| v["address"].as_str())
        .collect();
    assert_eq!(addrs, [a.addr.to_string(), b.addr.to_string()]);
    for v in servers {
        assert_eq!(v["state"], "up", "{v}");
        assert_eq!(v["weight"], 1, "{v}");
        assert_eq!(v["fails"], 0, "{v}");
    }
    assert_eq!(s["upstreams"][0]["name"], "u");
    assert_eq!(s["upstreams"][0]["balance"], "round_robin");

    let text = std::fs::read(&p.config_path).unwrap();
    let sum = std::process::Command::new("sha256sum")
        .arg(&p.config_path)
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&sum.stdout);
    assert_eq!(
        s["process"]["config_sha256"],
        want.split(' ').next().unwrap()
    );
    assert!(!text.is_empty());
    assert_eq!(s["process"]["reloads"], 0);
    assert!(s["process"]["reloaded_ms"].is_null());
    assert_eq!(s["process"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["process"]["serving"], true);
    assert_eq!(s["workers"].as_array().map(Vec::len), Some(1));
    assert_eq!(s["workers"][0]["requests"], 4);
    assert_eq!(s["workers"][0]["alive"], true);

    let v = &s["vrrp"];
    assert_eq!(v["status"], "running", "{v}");
    assert_eq!(v["instance"][0]["state"], "MASTER");
    assert_eq!(v["instance"][0]["peers"][0]["address"], "172.16.249.102");
    assert_eq!(v["instance"][0]["vips"][0]["on_interface"], true);

    // vrrp changes role: the next document says so.
    vrrp_file(&vrrp_dir, "BACKUP");
    assert_eq!(status_json(&p)["vrrp"]["instance"][0]["state"], "BACKUP");
    // vrrp gone: said, not an error.
    std::fs::remove_dir_all(&vrrp_dir).unwrap();
    assert_eq!(status_json(&p)["vrrp"]["status"], "not_running");

    // A reload is counted and timed; the digest follows the file.
    std::fs::write(&p.config_path, [text.as_slice(), b"\n"].concat()).unwrap();
    p.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = status_json(&p);
        if s["process"]["reloads"] == 1 {
            break s;
        }
        assert!(Instant::now() < deadline, "reload not shown: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        s["process"]["reloaded_ms"].as_u64().unwrap()
            >= s["process"]["started_ms"].as_u64().unwrap()
    );
    assert_ne!(
        s["process"]["config_sha256"],
        want.split(' ').next().unwrap()
    );
}

#[test]
fn page_is_html_that_may_load_nothing_from_elsewhere() {
    let a = Backend::page("a");
    let p = Proxy::with_backends(&[&a], "", "");
    let r = p.admin_get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").expect("CSP header");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let page = r.text();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("fetch(\"/api/status\""));
    // The query string is not part of the route.
    assert_eq!(p.admin_get("/api/status?t=1").status, 200);
    assert_eq!(p.admin_get("/nothing").status, 404);
}
