//! SSH provisioning of the four servers in `lab.toml`: hostname, time, firewall, SELinux,
//! Apache on the backends, `proxy` + `vrrp` as systemd services on the balancers, and the
//! static address last.
//!
//! Read it in this order. `inventory` parses and validates lab.toml (shared with the `lab`
//! crate); `names` is what it accepts as host, interface and time names. `render` turns it into
//! each balancer's proxy.toml and vrrp.toml (also shared, so the lab runs exactly what provision
//! deploys), `render_anycast` into the vrrp.toml and bird.conf of anycast mode (`[bgp] mode =
//! "anycast"`: every balancer announces the VIPs over BGP), `render_seed` into the nginx.conf and keepalived.conf of the system being replaced
//! (for side-by-side benchmarks), and `units` renders the systemd units for the host's systemd
//! version. `os` maps /etc/os-release to a supported family and knows what families differ in.
//! `plan` defines the idempotent actions and `steps` builds a host's plan from inventory, family
//! and systemd version: both pure, so every family's plan is golden-tested. `check` is the
//! read-only vocabulary of questions to a host, the only thing a dry run can run; `quote`
//! quotes and escapes every value per shell and file format. `exec` runs a plan over a `Remote`
//! (check first, apply only what differs) and `address` commit-confirms the address change with
//! the host deciding. `ssh` is the libssh2 transport and `hostkey` its
//! known_hosts check. `run` drives the hosts in parallel,
//! `rollout` makes the balancers take turns (backup first, stop at the first failure), `report`
//! formats progress and the recap, `adopt` reads an existing nginx + keepalived pair (read-only)
//! into a lab.toml and the files provision would deploy, `out` writes lines without interleaving, `diff` shows file
//! changes in a dry run, and `doubles` holds the TEST DOUBLES the lab installs where a
//! namespace has no systemd or yum.

pub mod address;
pub mod adopt;
pub mod check;
pub mod diff;
pub mod doubles;
pub mod exec;
pub mod hostkey;
pub mod inventory;
pub mod names;
pub mod os;
pub mod out;
pub mod plan;
pub mod quote;
pub mod render;
pub mod render_anycast;
pub mod render_seed;
pub mod report;
pub mod rollout;
pub mod run;
pub mod ssh;
pub mod steps;
pub mod units;
