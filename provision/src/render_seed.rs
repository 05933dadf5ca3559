//! The seed's own system, rendered from the same inventory: nginx.conf and keepalived.conf for a
//! balancer, as the seed writes them, so `lab bench --compare nginx` can run Debian's nginx and
//! keepalived on the same hosts our proxy and vrrp run on and measure both in one run.
//!
//! Differences from the seed's text, each because the seed's line cannot work or would make the
//! comparison unfair:
//! - `user www-data` (the seed's `user nginx` is CentOS's account; Debian's package uses www-data),
//!   no `include /usr/share/nginx/modules/*.conf` (CentOS's path; no module is needed) and no
//!   error_page blocks (they never apply to `/`, which is all the benchmark requests);
//! - upstream keep-alive (`keepalive N` + `proxy_http_version 1.1` + `Connection ""`) exactly when
//!   our rendered proxy.toml pools upstream connections, so both sides reuse backend connections
//!   or neither does;
//! - the track script checks nginx itself (`pidof nginx`) instead of the seed's script that
//!   restarts nginx through systemd and runs `killall keepalived`, with a weight that moves
//!   mastership ([`SEED_TRACK_WEIGHT`]; the seed's -20 never moves it from 150 to 100);
//! - no `vrrp_garp_interval 0` / `vrrp_gna_interval 0`: keepalived 2.2.7 rejects 0 (they were
//!   keepalived 1.3's way to say "no delay", which is the default now);
//! - the VIPs carry the network's prefix, as our vrrp.toml's do (the seed's bare addresses are
//!   /32), so the client reaches them the same way.

use std::fmt::Write as _;

use crate::inventory::{Host, Inventory};
use crate::render::{self, RenderError, BACKEND_PORT, UPSTREAM_NAME};

/// The seed system's track weight: the seed's negative-weight style, large enough to move
/// mastership (150 - 60 = 90 < 100). Ours uses weight 0 (FAULT), see `render::track_weight`.
pub const SEED_TRACK_WEIGHT: i32 = -60;
/// nginx's `keepalive` (idle upstream connections per worker) when our proxy.toml leaves the
/// pool to the proxy's default, `keepalive = "auto"` (as many idle connections as were recently
/// busy). nginx has no self-sizing pool; 32 per worker, with `worker_processes auto`, covers the
/// 50 connections of `lab bench` on two cores without reopening upstream connections.
pub const PROXY_DEFAULT_KEEPALIVE: u32 = 32;
/// The script keepalived runs to check nginx: exit status 0 while an nginx process exists in the
/// host (each lab host has its own PID namespace, so only its own nginx counts).
pub const CHECK_NGINX: &str = "/usr/bin/pidof nginx";
/// Seconds between two checks of nginx.
pub const CHECK_INTERVAL_SECS: u32 = 1;

/// Idle upstream connections our proxy pools per worker with the proxy.toml rendered for `host`
/// (its `keepalive`, or the proxy's default when the key is absent); 0 means no pooling.
pub fn proxy_upstream_keepalive(inv: &Inventory, host: &Host) -> Result<u32, RenderError> {
    let text = render::proxy_toml(inv, host)?;
    let set = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| {
            t.get("upstream")?
                .get(UPSTREAM_NAME)?
                .get("keepalive")?
                .as_integer()
        })
        .and_then(|n| u32::try_from(n).ok());
    Ok(set.unwrap_or(PROXY_DEFAULT_KEEPALIVE))
}

/// The seed's nginx.conf for balancer `host`: `upstream ProxyServer` of every backend with
/// weight 1, `location / { proxy_pass http://ProxyServer; }`, access log in the "main" format,
/// `worker_processes auto`, listening on port 80 for IPv4 and IPv6.
pub fn nginx_conf(inv: &Inventory, host: &Host) -> Result<String, RenderError> {
    render::balancer_priority(host)?;
    let keepalive = proxy_upstream_keepalive(inv, host)?;
    let mut s = String::new();
    // `writeln!` into a String cannot fail; the results are ignored deliberately.
    let _ = writeln!(
        s,
        "# nginx.conf for {} ({}): the seed's, rendered from lab.toml for `lab bench --compare nginx`.",
        host.name, host.address
    );
    s.push_str(
        r#"user www-data;
worker_processes auto;
error_log /var/log/nginx/error.log;
pid /run/nginx.pid;
events {
    worker_connections 1024;
}
http {
    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';
    access_log  /var/log/nginx/access.log  main;
    sendfile            on;
    tcp_nopush          on;
    tcp_nodelay         on;
    keepalive_timeout   65;
    types_hash_max_size 2048;
    include             /etc/nginx/mime.types;
    default_type        application/octet-stream;
"#,
    );
    let _ = writeln!(s, "    upstream {UPSTREAM_NAME} {{");
    for b in inv.backends() {
        let _ = writeln!(s, "        server {}:{BACKEND_PORT} weight=1;", b.address);
    }
    if keepalive > 0 {
        let _ = writeln!(
            s,
            "        # Our proxy.toml pools upstream connections ({keepalive} idle per worker): so does nginx."
        );
        let _ = writeln!(s, "        keepalive {keepalive};");
    }
    s.push_str(
        r#"    }
    server {
        listen       80 default_server;
        listen       [::]:80 default_server;
        server_name  _;
        location / {
            proxy_pass   http://ProxyServer;
            index  index.html index.htm;
"#,
    );
    if keepalive > 0 {
        s.push_str("            proxy_http_version 1.1;\n");
        s.push_str("            proxy_set_header Connection \"\";\n");
    }
    s.push_str("        }\n    }\n}\n");
    Ok(s)
}

/// The seed's keepalived.conf for balancer `host`: instance VI_1 with the inventory's router id,
/// priority, advert interval, PASS authentication and VIPs, tracking nginx.
pub fn keepalived_conf(inv: &Inventory, host: &Host) -> Result<String, RenderError> {
    let priority = render::balancer_priority(host)?;
    let net = &inv.network;
    let state = render::state_hint(inv, priority);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "! keepalived.conf for {} ({}): the seed's, rendered from lab.toml for `lab bench --compare nginx`.",
        host.name, host.address
    );
    let _ = writeln!(s, "global_defs {{");
    let _ = writeln!(s, "   router_id {}", host.name);
    let _ = writeln!(s, "   vrrp_skip_check_adv_addr");
    // The seed's `vrrp_garp_interval 0` / `vrrp_gna_interval 0` (keepalived 1.3's "no delay")
    // are rejected by keepalived 2.2.7 (range 0.000001..); no delay is its default anyway.
    // Without script_user keepalived looks for a `keepalived_script` account; without
    // enable_script_security it reports a security violation on every start.
    let _ = writeln!(s, "   script_user root");
    let _ = writeln!(s, "   enable_script_security");
    let _ = writeln!(s, "}}");
    let _ = writeln!(s);
    let _ = writeln!(s, "vrrp_script check_nginx {{");
    let _ = writeln!(s, "   script \"{CHECK_NGINX}\"");
    let _ = writeln!(s, "   interval {CHECK_INTERVAL_SECS}");
    let _ = writeln!(s, "   weight {SEED_TRACK_WEIGHT}");
    let _ = writeln!(s, "   fall 2");
    let _ = writeln!(s, "   rise 1");
    let _ = writeln!(s, "}}");
    let _ = writeln!(s);
    let _ = writeln!(s, "vrrp_instance VI_1 {{");
    let _ = writeln!(s, "    state {state}");
    let _ = writeln!(s, "    interface {}", host.interface);
    let _ = writeln!(s, "    virtual_router_id {}", net.virtual_router_id);
    let _ = writeln!(s, "    priority {priority}");
    let _ = writeln!(s, "    advert_int {}", net.advert_int);
    if let Some(pass) = &net.auth_pass {
        let _ = writeln!(s, "    authentication {{");
        let _ = writeln!(s, "        auth_type PASS");
        let _ = writeln!(s, "        auth_pass {pass}");
        let _ = writeln!(s, "    }}");
    }
    let _ = writeln!(s, "    track_script {{");
    let _ = writeln!(s, "        check_nginx");
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "    virtual_ipaddress {{");
    for v in &net.vips {
        let _ = writeln!(s, "        {v}/{}", net.prefix);
    }
    let _ = writeln!(s, "    }}");
    let _ = writeln!(s, "}}");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Inventory {
        Inventory::parse(include_str!("../../lab.toml"), "lab.toml").unwrap()
    }

    #[test]
    fn seed_nginx_conf_golden() {
        let inv = seed();
        let got = nginx_conf(&inv, inv.host("server1").unwrap()).unwrap();
        let want = r#"# nginx.conf for server1 (172.16.249.101): the seed's, rendered from lab.toml for `lab bench --compare nginx`.
user www-data;
worker_processes auto;
error_log /var/log/nginx/error.log;
pid /run/nginx.pid;
events {
    worker_connections 1024;
}
http {
    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';
    access_log  /var/log/nginx/access.log  main;
    sendfile            on;
    tcp_nopush          on;
    tcp_nodelay         on;
    keepalive_timeout   65;
    types_hash_max_size 2048;
    include             /etc/nginx/mime.types;
    default_type        application/octet-stream;
    upstream ProxyServer {
        server 172.16.249.201:80 weight=1;
        server 172.16.249.202:80 weight=1;
        # Our proxy.toml pools upstream connections (32 idle per worker): so does nginx.
        keepalive 32;
    }
    server {
        listen       80 default_server;
        listen       [::]:80 default_server;
        server_name  _;
        location / {
            proxy_pass   http://ProxyServer;
            index  index.html index.htm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"#;
        assert_eq!(got, want);
        // Both balancers proxy the same way; only the header comment differs.
        let other = nginx_conf(&inv, inv.host("server2").unwrap()).unwrap();
        assert_eq!(
            got.lines().skip(1).collect::<Vec<_>>(),
            other.lines().skip(1).collect::<Vec<_>>()
        );
    }

    #[test]
    fn seed_keepalived_conf_golden() {
        let inv = seed();
        let got = keepalived_conf(&inv, inv.host("server2").unwrap()).unwrap();
        let want = r#"! keepalived.conf for server2 (172.16.249.102): the seed's, rendered from lab.toml for `lab bench --compare nginx`.
global_defs {
   router_id server2
   vrrp_skip_check_adv_addr
   script_user root
   enable_script_security
}

vrrp_script check_nginx {
   script "/usr/bin/pidof nginx"
   interval 1
   weight -60
   fall 2
   rise 1
}

vrrp_instance VI_1 {
    state BACKUP
    interface ens33
    virtual_router_id 51
    priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    track_script {
        check_nginx
    }
    virtual_ipaddress {
        172.16.249.80/24
        172.16.249.90/24
        172.16.249.100/24
    }
}
"#;
        assert_eq!(got, want);
        let s1 = keepalived_conf(&inv, inv.host("server1").unwrap()).unwrap();
        assert!(s1.contains("    state MASTER\n"));
        assert!(s1.contains("    priority 150\n"));
        assert!(s1.contains("   router_id server1\n"));
    }

    #[test]
    fn upstream_keepalive_follows_our_proxy_toml() {
        let inv = seed();
        let s1 = inv.host("server1").unwrap();
        // The rendered proxy.toml leaves `keepalive` to the proxy's default: it pools.
        assert!(!render::proxy_toml(&inv, s1).unwrap().contains("keepalive"));
        assert_eq!(
            proxy_upstream_keepalive(&inv, s1).unwrap(),
            PROXY_DEFAULT_KEEPALIVE
        );
    }

    #[test]
    fn no_auth_pass_omits_authentication() {
        let text = include_str!("../../lab.toml").replace("auth_pass = \"1111\"", "");
        let inv = Inventory::parse(&text, "lab.toml").unwrap();
        let s1 = keepalived_conf(&inv, inv.host("server1").unwrap()).unwrap();
        assert!(!s1.contains("authentication"));
        assert!(!s1.contains("auth_pass"));
    }

    #[test]
    fn backends_are_not_balancers() {
        let inv = seed();
        let s3 = inv.host("server3").unwrap();
        assert_eq!(
            nginx_conf(&inv, s3),
            Err(RenderError::NotABalancer("server3".into()))
        );
        assert!(keepalived_conf(&inv, s3).is_err());
    }
}
