//! `provision adopt` end to end: lab hosts configured as the seed's nginx + keepalived pair
//! (provision's render_seed, the files `lab bench --compare nginx` runs), adopted over real SSH
//! from the lab's client namespace. The adopted lab.toml must give back the inventory the pair
//! was rendered from, and the hosts must be left as they were (adopt is read-only).
//!
//! Needs root and the workspace's binaries (`cargo build --bins`). One lab with a unique id,
//! removed on drop even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use lab::host::Service;
use lab::{Lab, UpOptions};
use provision::inventory::Inventory;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("profile dir")
        .to_path_buf()
}

struct Guard {
    lab: Lab,
    root: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.lab.down() {
            eprintln!("lab down failed: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn adopt_reads_the_seed_pair_back_into_lab_toml() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root (lab namespaces)");
    let id = format!("adp{}", std::process::id());
    let root = PathBuf::from(format!("/run/provision-adopt-{id}"));
    std::fs::create_dir_all(&root).expect("state root");
    let inv_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab.toml");
    let inv = Inventory::load(&inv_path).expect("lab.toml");
    let lab = Lab::new(&id, &root.join("state"), bin_dir()).expect("lab");
    let _guard = Guard {
        lab: lab.clone(),
        root: root.clone(),
    };
    lab.up(
        &inv_path,
        &UpOptions {
            without: vec![Service::Proxy, Service::Vrrp],
            progress: false,
            bare: true,
            ..UpOptions::default()
        },
    )
    .expect("lab up");
    let r = lab.open().expect("lab open");
    // The seed's pair: nginx.conf and keepalived.conf on the balancers, Apache with the
    // seed's pages on the backends.
    let mut before = Vec::new();
    for h in inv.balancers() {
        let host = r.host(&h.name).expect("host");
        let nginx = provision::render_seed::nginx_conf(&inv, h).unwrap();
        let keepalived = provision::render_seed::keepalived_conf(&inv, h).unwrap();
        host.write_file("/etc/nginx/nginx.conf", &nginx, 0o644)
            .expect("nginx.conf");
        host.write_file("/etc/keepalived/keepalived.conf", &keepalived, 0o644)
            .expect("keepalived.conf");
        // The seed names its servers first (hostnamectl set-hostname); a bare lab host still
        // has the machine's name.
        host.sh("echo \"$1\" >/etc/hostname && hostname \"$1\"", &[&h.name])
            .expect("hostname");
        // The lab's hosts have no default route; the seed's servers have one.
        let route = format!("ip route replace default via {}", inv.network.gateway);
        host.sh(&route, &[]).expect("default route");
        before.push((h.name.clone(), nginx, keepalived));
    }
    for b in inv.backends() {
        let host = r.host(&b.name).expect("backend");
        host.setup_role(&r.context()).expect("backend role");
        host.start(Service::Httpd, &r.context()).expect("httpd");
    }

    let out_dir = root.join("adopted");
    let out = Command::new("timeout")
        .args(["120", "ip", "netns", "exec", &r.plan.client.ns])
        .arg(env!("CARGO_BIN_EXE_provision"))
        .arg("adopt")
        .args(inv.balancers().map(|h| h.address.to_string()))
        .arg("-o")
        .arg(&out_dir)
        .arg("--key")
        .arg(r.lab.dir.ssh_key())
        .arg("--known-hosts")
        .arg(r.lab.dir.known_hosts())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run provision adopt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(3), "{stderr}");

    let adopted = std::fs::read_to_string(out_dir.join("lab.toml")).expect("lab.toml written");
    let back = Inventory::parse(&adopted, "adopted lab.toml").expect("valid lab.toml");
    assert_eq!(back.network.vips, inv.network.vips);
    assert_eq!(back.network.gateway, inv.network.gateway);
    assert_eq!(back.network.prefix, inv.network.prefix);
    assert_eq!(
        back.network.virtual_router_id,
        inv.network.virtual_router_id
    );
    assert_eq!(back.network.auth_pass, inv.network.auth_pass);
    assert_eq!(back.network.advert_int, inv.network.advert_int);
    let hosts = |i: &Inventory| -> Vec<_> {
        i.hosts
            .iter()
            .map(|h| (h.role, h.address, h.priority, h.page.clone()))
            .collect()
    };
    assert_eq!(hosts(&back), hosts(&inv));
    for h in inv.balancers() {
        let proxy = std::fs::read_to_string(out_dir.join(&h.name).join("proxy.toml")).unwrap();
        assert!(
            proxy.contains("{ address = \"172.16.249.201:80\", weight = 1 }"),
            "{proxy}"
        );
        assert!(out_dir.join(&h.name).join("imported-vrrp.toml").exists());
    }
    let report = std::fs::read_to_string(out_dir.join("report.txt")).unwrap();
    assert!(
        report
            .contains("/etc/keepalived/keepalived.conf:4: directive \"vrrp_skip_check_adv_addr\""),
        "{report}"
    );

    // Read-only: the hosts' files are as they were.
    for (name, nginx, keepalived) in before {
        let host = r.host(&name).unwrap();
        assert_eq!(
            host.read_file("/etc/nginx/nginx.conf").as_deref(),
            Some(nginx.as_str())
        );
        assert_eq!(
            host.read_file("/etc/keepalived/keepalived.conf").as_deref(),
            Some(keepalived.as_str())
        );
    }
}
