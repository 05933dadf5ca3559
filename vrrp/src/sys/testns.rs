//! Test-only network namespaces: a pair joined by a veth, created with `ip` and removed in Drop.
//!
//! Names include the pid and a counter so parallel tests (and parallel test binaries) never
//! collide. Code under test runs in a namespace by creating its sockets on a thread that has
//! `setns`-ed into it: a socket stays in the namespace it was created in.

use std::net::Ipv6Addr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn ns_exec(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("run ip netns exec");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread that entered namespace `ns`.
pub(crate) fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            // setns changes only this (scoped) thread's namespace.
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// Two namespaces `a` and `b`; `va` (10.77.0.1/24, fd77::1/64) in a, `vb` (10.77.0.2/24,
/// fd77::2/64) in b, with fixed link-local addresses and DAD off so they are usable at once.
pub(crate) struct NsPair {
    pub a: String,
    pub b: String,
    pub a_ll: Ipv6Addr,
    pub b_ll: Ipv6Addr,
}

impl NsPair {
    pub(crate) fn new(tag: &str) -> NsPair {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let a = format!("vrt{pid}-{n}-{tag}-a");
        let b = format!("vrt{pid}-{n}-{tag}-b");
        let pair = NsPair {
            a: a.clone(),
            b: b.clone(),
            a_ll: "fe80::77:ff:fe00:1".parse().expect("ll"),
            b_ll: "fe80::77:ff:fe00:2".parse().expect("ll"),
        };
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        // Fixed MACs give fixed EUI-64 link-local addresses.
        ip(&[
            "-n",
            &a,
            "link",
            "add",
            "va",
            "address",
            "02:77:00:00:00:01",
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "address",
            "02:77:00:00:00:02",
            "netns",
            &b,
        ]);
        for (ns, dev, v4, v6) in [
            (&a, "va", "10.77.0.1/24", "fd77::1/64"),
            (&b, "vb", "10.77.0.2/24", "fd77::2/64"),
        ] {
            ns_exec(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{dev}.accept_dad=0"),
                ],
            );
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // Carrier changes reach IPv6 through linkwatch, up to a second later; until then
        // there is no ff00::/8 route and multicast sends fail with ENETUNREACH.
        for (ns, dev) in [(&a, "va"), (&b, "vb")] {
            wait_mroute(ns, dev);
        }
        pair
    }
}

impl Drop for NsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn wait_mroute(ns: &str, dev: &str) {
    for _ in 0..100 {
        let out = Command::new("ip")
            .args([
                "-n", ns, "-6", "route", "show", "table", "local", "dev", dev,
            ])
            .output()
            .expect("ip route");
        let routes = String::from_utf8_lossy(&out.stdout);
        if routes.contains("ff00::/8") && routes.contains("fe80:") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("IPv6 on {dev} in {ns} did not come up within 5 s");
}
