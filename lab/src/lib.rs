//! The four servers of lab.toml (two nginx + keepalived balancers in front of two Apache
//! backends: "the seed", the setup this workspace replaces) on one machine, with network
//! namespaces, and the seed's failover test procedure run against them.
//!
//! `lab up` builds the hosts (a bridge in its own namespace, one namespace per host plus a
//! client). Each host boots its own systemd (or, with `--init none`, a shell that only holds
//! its namespaces) on its own filesystem view: overlays over the machine's /etc, /var, ...,
//! private /dev, /run and /tmp, the rest read-only, and a cgroup tree of its own. Apache runs
//! on the backends and our `proxy` and `vrrp` on the balancers as the units and configs
//! [`provision::render`] renders (so the lab runs exactly what `provision` deploys), and an
//! sshd everywhere; `lab scenario` stops, starts and cuts things while a client polls the VIP,
//! and judges each step. Nothing a host does reaches the machine's /tmp, /dev, clock or units.
//!
//! Who owns what:
//! - [`lab`]: the lab as a whole: `up` (in the order that lets `down` undo a crash at any
//!   point), `down`, and (`lab::running`) operations on a running lab: status, exec,
//!   services, links, VIPs, reboots.
//! - [`state`]: names derived from the lab id (so labs never collide), the hosts' init, and
//!   the state file that records everything `up` created.
//! - [`topology`]: the network: bridge namespace, veth pairs, addresses (a pure plan, then
//!   `ip` commands); nothing ever touches the machine's own namespace.
//! - [`host`]: one host: its keeper (the process holding its namespaces, systemd or a shell),
//!   what a systemd host boots (`host::boot`), files inside it, and its services.
//! - [`router`]: the ECMP topology's router: FRR (zebra, bfdd, bgpd) confined in a lab
//!   namespace, its rendered configs, and the nexthops it installed for a VIP.
//! - [`cgroup`]: the cgroup directories systemd hosts boot in, found and removed again.
//! - [`probe`]: looking from inside: HTTP from the client and "who holds the VIP" from threads
//!   that entered a namespace, and the recorder the scenario polls with.
//! - [`scenario`]: the steps, their pure evaluation (`eval`), the report and the SVG timeline.
//! - [`bench`], [`compare`]: wrk against the VIP, alone or against nginx + keepalived.
//! - [`sys`]: commands with useful errors, signals, pids and namespaces of processes.

pub mod bench;
pub mod cgroup;
pub mod compare;
pub mod error;
pub mod host;
pub mod lab;
pub mod netlink;
pub mod probe;
pub mod router;
pub mod scenario;
pub mod state;
pub mod sys;
pub mod topology;

pub use error::{LabError, Result};
pub use lab::{default_bin_dir, Lab, Running, UpOptions, UpOutcome};
