use super::*;
use crate::inventory::Inventory;

fn seed() -> Inventory {
    Inventory::parse(include_str!("../../lab.toml"), "lab.toml").unwrap()
}

/// What `nginx -T` prints for `files` (checked against nginx 1.22 on this machine: header,
/// the file, one extra newline).
fn nginx_t(files: &[(&str, &str)]) -> String {
    files
        .iter()
        .map(|(p, t)| format!("# configuration file {p}:\n{t}\n"))
        .collect()
}

#[test]
fn nginx_t_output_splits_into_its_files_main_first() {
    let out = nginx_t(&[
        (
            "/etc/nginx/nginx.conf",
            "events {}\nhttp { include conf.d/*.conf; }\n",
        ),
        ("/etc/nginx/conf.d/a.conf", "server { listen 80; }\n"),
    ]);
    let files = split_nginx_t(&out);
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].0, PathBuf::from("/etc/nginx/nginx.conf"));
    assert_eq!(files[0].1, "events {}\nhttp { include conf.d/*.conf; }\n");
    assert_eq!(files[1].1, "server { listen 80; }\n");
    let mem = MemFiles(files.into_iter().collect());
    assert_eq!(
        mem.glob(Path::new("/etc/nginx/conf.d/*.conf")).unwrap(),
        [PathBuf::from("/etc/nginx/conf.d/a.conf")]
    );
    assert!(mem.read(Path::new("/etc/nginx/mime.types")).is_err());
}

/// The balancers of lab.toml as `fetch` would see them running the seed's nginx + keepalived.
fn fetched(inv: &Inventory) -> Vec<Fetched> {
    inv.balancers()
        .map(|h| {
            let nginx = crate::render_seed::nginx_conf(inv, h).unwrap();
            Fetched {
                address: h.address,
                hostname: h.name.clone(),
                nginx_t: nginx_t(&[("/etc/nginx/nginx.conf", &nginx)]),
                keepalived_path: "/etc/keepalived/keepalived.conf".into(),
                keepalived_conf: crate::render_seed::keepalived_conf(inv, h).unwrap(),
                gateway: Some(inv.network.gateway),
                dns: inv.network.dns.clone(),
                timezone: Some(inv.time.timezone.clone()),
                prefix: Some(inv.network.prefix),
                pages: inv
                    .backends()
                    .map(|b| (b.address, b.page.clone().unwrap()))
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn adopting_the_seed_pair_gives_back_lab_toml_and_what_provision_renders() {
    let inv = seed();
    let adopted = adopt(&fetched(&inv), "root").unwrap();
    let lab = &adopted.files[0];
    assert_eq!(lab.0, PathBuf::from("lab.toml"));
    let back = Inventory::parse(&lab.1, "lab.toml").unwrap();
    assert_eq!(back.network, inv.network);
    assert_eq!(back.time.timezone, inv.time.timezone);
    // Backends get names of their own; everything else about the hosts comes back.
    let strip = |i: &Inventory| -> Vec<_> {
        i.hosts
            .iter()
            .map(|h| {
                (
                    h.role,
                    h.address,
                    h.interface.clone(),
                    h.priority,
                    h.page.clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&back), strip(&inv));
    // The per-host files are exactly what provision renders from the original inventory.
    for h in inv.balancers() {
        let file = |name: &str| {
            adopted
                .files
                .iter()
                .find(|(p, _)| *p == Path::new(&h.name).join(name))
                .map(|(_, t)| t.clone())
                .unwrap()
        };
        // Backend names only appear as comments in proxy.toml.
        let proxy = file("proxy.toml")
            .replace("# backend1", "# server3")
            .replace("# backend2", "# server4");
        assert_eq!(proxy, crate::render::proxy_toml(&inv, h).unwrap());
        assert_eq!(
            file("vrrp.toml"),
            crate::render::vrrp_toml(&inv, h).unwrap()
        );
        assert!(file("imported-vrrp.toml").contains("weight = -60"));
    }
    // Reported: mime.types (not printed by this nginx -T), script_user and friends, and the
    // time servers lab.toml cannot learn from the hosts.
    assert!(adopted.losses);
    assert!(
        adopted
            .report
            .contains("/etc/nginx/nginx.conf:19: directive \"include\""),
        "{}",
        adopted.report
    );
    assert!(
        adopted
            .report
            .contains("lab.toml: time servers are not read"),
        "{}",
        adopted.report
    );
}

#[test]
fn a_host_without_nginx_output_is_an_error() {
    let inv = seed();
    let mut f = fetched(&inv);
    f[0].nginx_t = String::new();
    let e = adopt(&f, "root").unwrap_err();
    assert!(e.contains("nginx -T printed no configuration file"), "{e}");
}

#[test]
fn shared_or_placeholder_host_names_become_address_names() {
    let inv = seed();
    let mut f = fetched(&inv);
    for b in &mut f {
        b.hostname = "localhost.localdomain".into();
    }
    let adopted = adopt(&f, "root").unwrap();
    let lab = &adopted.files[0].1;
    assert!(lab.contains("name = \"lb-172-16-249-101\""), "{lab}");
    assert!(lab.contains("name = \"lb-172-16-249-102\""), "{lab}");
    let mut f = fetched(&inv);
    for b in &mut f {
        b.hostname = "vm".into();
    }
    let adopted = adopt(&f, "root").unwrap();
    assert!(adopted.files[0].1.contains("lb-172-16-249-102"));
}
