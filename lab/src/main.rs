//! `lab`: the seed's four servers on one machine (network namespaces), and its test procedure.

mod provision_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lab::host::Service;
use lab::state::{Init, DEFAULT_STATE_ROOT};
use lab::topology::Topology;
use lab::{bench, compare, scenario, Lab, LabError, UpOptions, UpOutcome};

#[derive(Parser)]
#[command(
    version,
    about = "The seed's nginx+keepalived servers on one machine, and its test procedure"
)]
struct Cli {
    /// Lab id: every namespace is named "<id>-<host>", so labs never collide.
    #[arg(long, global = true, default_value = "lab")]
    id: String,
    /// Where lab state (and the lab SSH key) lives.
    #[arg(long, global = true, default_value = DEFAULT_STATE_ROOT)]
    state_root: PathBuf,
    /// Directory with the proxy and vrrp binaries (default: next to this binary).
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the hosts of lab.toml and start their services.
    Up {
        /// Inventory (default: ./lab.toml, else the repository's).
        inventory: Option<PathBuf>,
        /// Do not start these services (debugging).
        #[arg(long, value_delimiter = ',')]
        without: Vec<String>,
        /// Hosts as freshly installed servers (sshd only), for `provision` to set up.
        #[arg(long)]
        bare: bool,
        /// PID 1 of each host: systemd (default where it can boot) or none.
        #[arg(long, value_parser = parse_init)]
        init: Option<Init>,
        /// flat: the seed's one segment (VRRP); ecmp: a router namespace (FRR, BGP + BFD,
        /// ECMP) between the client and the balancers, which announce the VIPs (anycast).
        #[arg(long, value_parser = parse_topology, default_value = "flat")]
        topology: Topology,
    },
    /// Remove everything the lab created (also after a crash or a half-done up).
    Down,
    /// Hosts, processes, links and who holds each VIP.
    Status,
    /// Run a command inside a host (or "client").
    Exec {
        host: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a service on a host: proxy, vrrp, httpd, sshd, bird or all.
    Stop {
        host: String,
        service: Option<String>,
    },
    /// Start a service on a host: proxy, vrrp, httpd, sshd, bird or all.
    Start {
        host: String,
        service: Option<String>,
    },
    /// The last lines of a host's service logs (all its services by default).
    Logs {
        host: String,
        service: Option<String>,
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Reboot a systemd host (power off, boot again): enabled units come back by themselves.
    Reboot { host: String },
    /// Cut a host's link (as if its cable were pulled).
    Cut { host: String },
    /// Restore a host's link.
    Heal { host: String },
    /// Run the seed's test procedure against the running lab (with --topology ecmp: both
    /// balancers serving, a proxy death, a link cut, each withdrawn from the router).
    Scenario {
        /// The timeline picture (default target/lab/timeline.svg; ecmp:
        /// target/lab/ecmp-timeline.svg).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Also write a JSON report here (ecmp: always, by default to
        /// target/lab/ecmp-scenario.json).
        #[arg(long)]
        json: Option<PathBuf>,
        /// The procedure for this topology (default: the running lab's); must be the lab's.
        #[arg(long, value_parser = parse_topology)]
        topology: Option<Topology>,
    },
    /// wrk from the client against the VIP, in rounds; records target/lab/bench.{md,svg}.
    Bench {
        /// Seconds of wrk per round.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        #[arg(long, default_value_t = 50)]
        connections: u32,
        /// Rounds per system (interleaved with --compare); the report gives medians.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Also run the seed's own system (Debian's nginx + keepalived) on the balancers in
        /// place of our proxy + vrrp, and print both side by side. Only "nginx".
        #[arg(long, value_name = "SYSTEM")]
        compare: Option<String>,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where bench.md, bench.svg and the wrk script go.
        #[arg(long, default_value = "target/lab")]
        out: PathBuf,
        /// Run our proxy with this `workers` ("auto" or a number) for this bench only: the
        /// balancers' proxy.toml is rewritten, and restored afterwards.
        #[arg(long, value_name = "auto|N")]
        workers: Option<String>,
        /// Run our proxy with `pin_workers = true` for this bench only.
        #[arg(long)]
        pin_workers: bool,
        /// Cap the requests each backend gets at once from the balancer, all its workers
        /// together (`max_conns = N` on every server), and queue the rest in the proxy, first
        /// come first served, for this bench only: trades throughput for tail latency (see the
        /// README).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_conns: Option<u32>,
    },
    /// Run provision on the lab's inventory from the lab's client namespace, with the lab's
    /// key and known_hosts (flags go to provision: --dry-run, --hosts, -v, ...).
    Provision {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<String>,
    },
    /// up (bare: sshd only), provision over SSH, scenario, bench, summary, down.
    Demo {
        inventory: Option<PathBuf>,
        /// Leave the lab up afterwards.
        #[arg(long)]
        keep: bool,
        /// PID 1 of each host: systemd (default where it can boot) or none.
        #[arg(long, value_parser = parse_init)]
        init: Option<Init>,
        #[arg(long, default_value = "target/lab/timeline.svg")]
        svg: PathBuf,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn default_inventory(bin_dir: &Path) -> PathBuf {
    let local = PathBuf::from("lab.toml");
    if local.exists() {
        return local;
    }
    // target/<profile>/lab -> the repository root.
    let repo = bin_dir.join("../../lab.toml");
    if repo.exists() {
        repo
    } else {
        local
    }
}

fn parse_init(s: &str) -> Result<Init, String> {
    Init::parse(s).ok_or_else(|| format!("{s:?}: systemd or none"))
}

fn parse_topology(s: &str) -> Result<Topology, String> {
    Topology::parse(s).ok_or_else(|| format!("{s:?}: flat or ecmp"))
}

fn parse_service(s: Option<&str>) -> Result<Option<Service>, LabError> {
    match s {
        None | Some("all") => Ok(None),
        Some(name) => Service::parse(name).map(Some).ok_or_else(|| {
            LabError::Other(format!(
                "unknown service {name:?} (proxy, vrrp, httpd, sshd, bird or all)"
            ))
        }),
    }
}

fn up(lab: &Lab, inventory: &Path, opts: &UpOptions) -> Result<UpOutcome, LabError> {
    let outcome = lab.up(inventory, opts)?;
    if outcome == UpOutcome::AlreadyUp {
        println!(
            "lab {:?} is already up (`lab status` shows it, `lab down` removes it)",
            lab.names.id
        );
    }
    print!("{}", lab.open()?.status());
    Ok(outcome)
}

fn run(cli: Cli) -> Result<ExitCode, LabError> {
    let bin_dir = cli.bin_dir.clone().unwrap_or_else(lab::default_bin_dir);
    let lab = Lab::new(&cli.id, &cli.state_root, bin_dir.clone())?;
    match cli.cmd {
        Cmd::Up {
            inventory,
            without,
            bare,
            init,
            topology,
        } => {
            let without = without
                .iter()
                .map(|s| {
                    parse_service(Some(s)).and_then(|o| {
                        o.ok_or_else(|| LabError::Other("--without all makes no sense".into()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let inventory = inventory.unwrap_or_else(|| default_inventory(&bin_dir));
            up(
                &lab,
                &inventory,
                &UpOptions {
                    without,
                    progress: true,
                    bare,
                    init,
                    topology,
                },
            )?;
        }
        Cmd::Down => {
            let removed = lab.down()?;
            if removed.is_empty() {
                println!("lab {:?}: nothing to remove", lab.names.id);
            } else {
                println!("lab {:?} removed: {}", lab.names.id, removed.join(", "));
            }
        }
        Cmd::Status => print!("{}", lab.open()?.status()),
        Cmd::Exec { host, command } => {
            let code = lab.open()?.exec(&host, &command)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Cmd::Stop { host, service } => {
            for (svc, was) in lab
                .open()?
                .stop(&host, parse_service(service.as_deref())?)?
            {
                println!(
                    "{host}: {svc} {}",
                    if was { "stopped" } else { "was not running" }
                );
            }
        }
        Cmd::Start { host, service } => {
            for (svc, pid) in lab
                .open()?
                .start(&host, parse_service(service.as_deref())?)?
            {
                println!("{host}: {svc} running (pid {pid})");
            }
        }
        Cmd::Logs {
            host,
            service,
            lines,
        } => {
            let running = lab.open()?;
            let h = running.host(&host)?;
            let which = parse_service(service.as_deref())?;
            for &svc in h.services() {
                if which.is_none_or(|w| w == svc) {
                    match h.init {
                        Init::Systemd => println!("==> {host}: journalctl -u {} <==", svc.unit()),
                        Init::None => println!("==> {host}:{} <==", svc.log()),
                    }
                    println!("{}", h.log_tail(svc, lines));
                }
            }
        }
        Cmd::Reboot { host } => {
            let t = std::time::Instant::now();
            let pid = lab.open()?.reboot(&host)?;
            println!(
                "{host}: rebooted in {:.1} s (systemd {pid})",
                t.elapsed().as_secs_f64()
            );
        }
        Cmd::Cut { host } => {
            lab.open()?.set_link(&host, false)?;
            println!("{host}: link cut");
        }
        Cmd::Heal { host } => {
            lab.open()?.set_link(&host, true)?;
            println!("{host}: link restored");
        }
        Cmd::Scenario {
            svg,
            json,
            topology,
        } => {
            let running = lab.open()?;
            let lab_topology = running.plan.topology();
            if topology.is_some_and(|t| t != lab_topology) {
                return Err(LabError::Other(format!(
                    "lab {:?} runs the {lab_topology} topology; `lab down`, then `lab up --topology {}`",
                    lab.names.id,
                    topology.unwrap_or_default()
                )));
            }
            if lab_topology == Topology::Ecmp {
                let d = scenario::ecmp::Options::default();
                let opts = scenario::ecmp::Options {
                    svg: svg.unwrap_or(d.svg.clone()),
                    json: json.or(d.json.clone()),
                    ..d
                };
                let report = scenario::ecmp::run(&running, &opts)?;
                println!(
                    "\n{}",
                    scenario::ecmp::summary(&report.steps, report.duration_s)
                );
                println!("timeline: {}", opts.svg.display());
                if let Some(j) = &opts.json {
                    println!("report: {}", j.display());
                }
                return Ok(if report.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let opts = scenario::Options {
                svg: svg.unwrap_or_else(|| scenario::Options::default().svg),
                json,
                ..scenario::Options::default()
            };
            let report = scenario::run(&running, &opts)?;
            println!("\n{}", scenario::summary(&report));
            println!("timeline: {}", opts.svg.display());
            return Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Cmd::Bench {
            duration,
            connections,
            rounds,
            compare,
            json,
            out,
            workers,
            pin_workers,
            max_conns,
        } => {
            let load = bench::Load {
                duration: Duration::from_secs(duration),
                connections,
            };
            let running = lab.open()?;
            let tuning = bench::tuning::Workers {
                workers,
                pin: pin_workers,
                max_conns,
            };
            let applied = if tuning.is_default() {
                None
            } else {
                Some(bench::tuning::apply(&running, &tuning)?)
            };
            let (report, json_text) = match compare.as_deref() {
                Some("nginx") => {
                    let opts = compare::Options {
                        load,
                        rounds,
                        progress: true,
                        out: out.clone(),
                    };
                    let mut c = compare::run(&running, &opts)?;
                    c.report.notes.extend(tuning.note());
                    print!("{}", compare::table(&c));
                    (c.report.clone(), serde_json::to_string_pretty(&c))
                }
                Some(system) => {
                    return Err(LabError::Other(format!(
                        "--compare {system:?}: only `nginx` (nginx + keepalived, the seed's system)"
                    )))
                }
                None => {
                    let mut r = bench::run(&running, &load, rounds, &out, true)?;
                    r.notes.extend(tuning.note());
                    print!("{}", r.table());
                    (r.clone(), serde_json::to_string_pretty(&r))
                }
            };
            drop(applied);
            let paths = bench::record(&report, &out)?;
            println!("written: {}", paths.join(", "));
            if let Some(path) = json {
                let text = json_text.map_err(|e| LabError::Other(format!("JSON: {e}")))?;
                std::fs::write(&path, text)
                    .map_err(|e| LabError::Other(format!("write {}: {e}", path.display())))?;
            }
        }
        Cmd::Provision { flags } => return provision_cmd::run(&lab, &flags),
        Cmd::Demo {
            inventory,
            keep,
            init,
            svg,
            json,
        } => {
            let inventory = inventory.unwrap_or_else(|| default_inventory(&bin_dir));
            return demo(&lab, &inventory, keep, init, svg, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Deploys the bare lab with `provision` over SSH, as onto real servers, from the client namespace with the
/// lab's key and known_hosts. What a lab host cannot run (yum/dnf, apt-get on the shared /usr,
/// SELinux tools, EL's network-scripts) is stood in for by `provision::doubles`, installed into
/// each host's own /usr/local/bin and /etc/systemd/system; systemd, firewalld and chrony are real.
fn deploy(lab: &Lab, running: &lab::Running) -> Result<(), LabError> {
    for h in running.hosts() {
        for (name, script) in provision::doubles::ALL {
            h.write_file(&format!("/usr/local/bin/{name}"), script, 0o755)?;
        }
        if h.init == Init::Systemd {
            for (name, unit) in provision::doubles::UNITS {
                h.write_file(&format!("/etc/systemd/system/{name}"), unit, 0o644)?;
            }
            h.systemctl(&["daemon-reload"])?;
        }
    }
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &running.plan.client.ns])
        .arg(lab.bin_dir.join("provision"))
        .arg(lab.dir.inventory_file())
        .arg("--known-hosts")
        .arg(lab.dir.known_hosts())
        .arg("--key")
        .arg(lab.dir.ssh_key())
        .arg("--bin-dir")
        .arg(&lab.bin_dir);
    let status = cmd.status().map_err(|source| LabError::Spawn {
        command: "provision".into(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(LabError::Other(format!("provision failed ({status})")))
    }
}

fn demo(
    lab: &Lab,
    inventory: &Path,
    keep: bool,
    init: Option<Init>,
    svg: PathBuf,
    json: Option<PathBuf>,
) -> Result<ExitCode, LabError> {
    println!(
        "== lab up --bare ({}): fresh servers, only sshd",
        inventory.display()
    );
    let up_outcome = up(
        lab,
        inventory,
        &UpOptions {
            progress: true,
            bare: true,
            init,
            ..UpOptions::default()
        },
    )?;
    let outcome = (|| -> Result<(scenario::Report, Option<bench::Round>), LabError> {
        let running = lab.open()?;
        if up_outcome == UpOutcome::Created {
            println!("\n== provision (over SSH from the client, as on real servers)");
            deploy(lab, &running)?;
        }
        println!("\n== scenario (the seed's 运行测试用例, automated)");
        let opts = scenario::Options {
            svg: svg.clone(),
            json,
            ..scenario::Options::default()
        };
        let report = scenario::run(&running, &opts)?;
        println!("\n== bench");
        let load = bench::Load {
            duration: Duration::from_secs(5),
            connections: 50,
        };
        let b = match bench::run(&running, &load, 1, &bench::default_out_dir(), false) {
            Ok(r) => {
                print!("{}", r.table());
                r.rounds.into_iter().next()
            }
            Err(e) => {
                println!("bench failed: {e}");
                None
            }
        };
        Ok((report, b))
    })();
    let code = match &outcome {
        Ok((report, bench)) => {
            println!("\n== summary");
            print!("{}", scenario::summary(report));
            if let Some(b) = bench {
                println!(
                    "bench: {:.0} req/s, latency p50 {:.2} ms p99 {:.2} ms",
                    b.requests_per_sec, b.p50_ms, b.p99_ms
                );
            }
            println!("timeline: {}", svg.display());
            if report.ok() && bench.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("lab: demo failed: {e}");
            ExitCode::FAILURE
        }
    };
    if keep || up_outcome == UpOutcome::AlreadyUp {
        // A lab the user had up before the demo stays up.
        println!("\nlab {:?} left up: `lab status`, `lab down`", lab.names.id);
    } else {
        println!("\n== lab down");
        let removed = lab.down()?;
        println!("removed: {}", removed.join(", "));
    }
    Ok(code)
}
