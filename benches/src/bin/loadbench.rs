//! `loadbench`: our proxy against nginx and HAProxy (and the backend directly) with wrk, in one
//! run on loopback. Build first (`cargo build --release --bins -p proxy -p benches`, or
//! `benches/run.sh`), then `target/release/loadbench [--quick] [--workers 2] [--out DIR]`.
//!
//! Cases run case-major with the targets interleaved, so slow drifts in machine load (other work
//! on a shared host) spread over all targets instead of penalising whichever ran last.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use benches::backends::{self, BackendKind};
use benches::report::{self, IdleRow, Report, Row};
use benches::targets::UpstreamKeepalive;
use benches::targets::{self, Kind, ProxySetup};
use benches::{backend, idle, procfs, wrk, BenchError, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Load benchmark: our proxy vs nginx vs HAProxy vs direct, with wrk on loopback")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Short run (under a minute): 1 s per case, small@50 and 1 MiB only, 1k idle connections.
    #[arg(long)]
    quick: bool,
    /// Minimal CI smoke run (~20 s): direct, ours and nginx; small@50; 200 idle connections.
    #[arg(long)]
    smoke: bool,
    /// Where results.md and results.svg go.
    #[arg(long, default_value = "target/loadbench")]
    out: PathBuf,
    /// Workers (processes / threads) for every proxy.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Seconds measured per case (default 5; 1 with --quick / --smoke).
    #[arg(long)]
    duration: Option<u64>,
    /// Measure each case this many times (targets interleaved) and report the median by req/s.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Warm-up seconds before each measured case (not counted).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Idle keep-alive connections held against each proxy (default 10000; 1000 quick; 200 smoke).
    #[arg(long)]
    idle: Option<usize>,
    /// Comma-separated targets: direct,proxy,nginx,haproxy (default all; smoke: direct,proxy,nginx).
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// Comma-separated case labels to run, e.g. `--cases '1MiB c50,64B c200'` (default: all of
    /// the chosen mode). `--idle 0` skips the idle-connection measurement.
    #[arg(long, value_delimiter = ',')]
    cases: Option<Vec<String>>,
    /// Our proxy's binary (default: `proxy` next to this executable).
    #[arg(long)]
    proxy_bin: Option<PathBuf>,
    /// Extra argument for our proxy's command line (repeatable), e.g. `--proxy-arg=--engine=epoll`.
    #[arg(long = "proxy-arg", allow_hyphen_values = true)]
    proxy_args: Vec<String>,
    /// Extra top-level proxy.toml line (repeatable), e.g. `--proxy-toml 'pin_workers = true'`.
    #[arg(long = "proxy-toml")]
    proxy_toml: Vec<String>,
    /// Backend threads (default: as many as the proxies' workers, at most one per core).
    #[arg(long)]
    backend_threads: Option<usize>,
    /// The server behind the proxies: `monoio` (the bench's own responder, never closes a
    /// connection), `nginx` (Debian's, static files) or `apache` (event MPM, closes after 100
    /// requests or 5 s idle).
    #[arg(long, default_value = "monoio", value_parser = parse_backend)]
    backend: BackendKind,
    /// Upstream `keepalive` for ours and nginx: a number for both, or `auto` (our default; nginx
    /// then gets 1024). HAProxy keeps its own default.
    #[arg(long, default_value = "auto", value_parser = UpstreamKeepalive::parse)]
    upstream_keepalive: UpstreamKeepalive,
}

fn parse_backend(s: &str) -> std::result::Result<BackendKind, String> {
    BackendKind::parse(s).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run only the backend (used by loadbench itself): prints "PORT n", serves until killed.
    #[command(hide = true)]
    Backend {
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// monoio, nginx or apache.
        #[arg(long, default_value = "monoio", value_parser = parse_backend)]
        kind: BackendKind,
    },
}

/// One wrk case: response size by path, and client connections.
struct Case {
    label: &'static str,
    path: &'static str,
    conns: usize,
}

const FULL: [Case; 5] = [
    Case {
        label: "64B c50",
        path: "/small",
        conns: 50,
    },
    Case {
        label: "64B c200",
        path: "/small",
        conns: 200,
    },
    Case {
        label: "64B c1000",
        path: "/small",
        conns: 1000,
    },
    Case {
        label: "16KiB c50",
        path: "/16k",
        conns: 50,
    },
    Case {
        label: "1MiB c50",
        path: "/1m",
        conns: 50,
    },
];

fn main() -> ExitCode {
    let args = Args::parse();
    let r = match &args.cmd {
        Some(Cmd::Backend { threads, kind }) => run_backend(*threads, *kind),
        None => run(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_backend(threads: usize, kind: BackendKind) -> Result<()> {
    if kind != BackendKind::Monoio {
        // A real server runs as our child; it is stopped (by pid) when SIGTERM or SIGINT ends us.
        let exe = std::env::current_exe().ctx("find own executable")?;
        let b = backends::start(kind, &exe, threads)?;
        println!("PORT {}", b.port);
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        wait_for_stop_signal();
        drop(b);
        return Ok(());
    }
    let (port, listeners) = backend::bind(threads).ctx("bind backend")?;
    println!("PORT {port}");
    backend::serve(listeners).ctx("backend")
}

/// Block until SIGTERM or SIGINT arrives (then return instead of dying, so guards run).
fn wait_for_stop_signal() {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it, pthread_sigmask
    // blocks the two signals for this (only) thread so sigwait can take them synchronously.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
    }
}

/// One measured wrk run of `case` against a fresh `kind` process.
fn measure(
    kind: Kind,
    backend_pid: u32,
    case: &Case,
    setup: &ProxySetup,
    warmup: u64,
    secs: u64,
    notes: &mut Vec<String>,
) -> Result<Row> {
    // A fresh process per case: peak RSS then belongs to this case alone (allocators keep what
    // an earlier, heavier case grew to), and one case cannot leave another a degraded proxy.
    let mut t = targets::start(kind, setup)?;
    let url = format!("http://127.0.0.1:{}{}", t.port, case.path);
    eprintln!("loadbench: {} -> {} ({} s)", case.label, t.kind, secs);
    if warmup > 0 {
        let _ = wrk::run(&url, case.conns, warmup);
    }
    if let Some(p) = t.proc.as_mut() {
        p.check_alive()?;
    }
    let pid = t.pid();
    if let Some(pid) = pid {
        procfs::reset_peak(pid);
    }
    // Everything this measurement itself burns, to tell the rest of the machine's load apart.
    let ours = || {
        procfs::rusage_seconds(libc::RUSAGE_SELF)
            + procfs::rusage_seconds(libc::RUSAGE_CHILDREN)
            + procfs::tree_cpu_seconds(backend_pid)
    };
    let (busy0, ours0, t0) = (procfs::system_busy_seconds(), ours(), Instant::now());
    let cpu0 = pid.map(procfs::tree_cpu_seconds);
    let opens0 = procfs::tcp_active_opens();
    let res = wrk::run(&url, case.conns, secs);
    let opens1 = procfs::tcp_active_opens();
    let cpu1 = pid.map(procfs::tree_cpu_seconds);
    let (busy1, ours1, wall) = (procfs::system_busy_seconds(), ours(), t0.elapsed());
    let peak = pid.map(|p| procfs::tree_status_kib(p, "VmHWM"));
    if let Some(Err(e)) = t.proc.as_mut().map(|p| p.check_alive()) {
        notes.push(format!("{}: {e} during the measured run", case.label));
    }
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadbench: {} against {} failed: {e}", case.label, t.kind);
            notes.push(format!("{} against {} failed: {e}", case.label, t.kind));
            wrk::WrkResult::default()
        }
    };
    let cpu_per_1k = match (cpu0, cpu1) {
        (Some(a), Some(b)) if res.requests > 0 => Some((b - a) / res.requests as f64 * 1000.0),
        _ => None,
    };
    let target_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let other = (busy1 - busy0) - (ours1 - ours0) - target_cpu;
    // wrk opens its connections once at the start of the run; reconnects after a close count.
    let connects = opens1
        .saturating_sub(opens0)
        .saturating_sub(case.conns as u64);
    let connects_per_req = (res.requests > 0).then(|| connects as f64 / res.requests as f64);
    Ok(Row {
        case: case.label.to_string(),
        target: t.kind,
        wrk: res,
        cpu_per_1k,
        peak_rss_kib: peak,
        other_load: Some((other / wall.as_secs_f64().max(1e-3)).max(0.0)),
        connects_per_req,
    })
}

fn cmd_version(cmd: &str, arg: &str) -> String {
    std::process::Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_else(|_| format!("{cmd}: not found"))
}

fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let quick = args.quick || args.smoke;
    let secs = args.duration.unwrap_or(if quick { 1 } else { 5 });
    let idle_n = args.idle.unwrap_or(if args.smoke {
        200
    } else if quick {
        1000
    } else {
        10_000
    });
    let cases: Vec<&Case> = if args.smoke {
        FULL.iter().take(1).collect()
    } else if quick {
        FULL.iter()
            .filter(|c| c.conns == 50 && c.path != "/16k")
            .collect()
    } else {
        FULL.iter().collect()
    };
    let cases: Vec<&Case> = match &args.cases {
        Some(want) => {
            if let Some(bad) = want
                .iter()
                .find(|w| !FULL.iter().any(|c| c.label == w.trim()))
            {
                let labels: Vec<&str> = FULL.iter().map(|c| c.label).collect();
                return Err(BenchError::Other(format!(
                    "unknown case {bad:?} (cases: {})",
                    labels.join(", ")
                )));
            }
            FULL.iter()
                .filter(|c| want.iter().any(|w| w.trim() == c.label))
                .collect()
        }
        None => cases,
    };
    let kinds: Vec<Kind> = match &args.targets {
        Some(list) => list
            .iter()
            .map(|t| {
                Kind::parse(t.trim())
                    .ok_or_else(|| BenchError::Other(format!("unknown target {t:?}")))
            })
            .collect::<Result<_>>()?,
        None if args.smoke => vec![Kind::Direct, Kind::Ours, Kind::Nginx],
        None => Kind::ALL.to_vec(),
    };
    let exe = std::env::current_exe().ctx("find own executable")?;
    let proxy_bin = match &args.proxy_bin {
        Some(p) => p.clone(),
        None => exe.with_file_name("proxy"),
    };
    if kinds.contains(&Kind::Ours) && !proxy_bin.exists() {
        return Err(BenchError::Other(format!(
            "{} not found: run `cargo build --release --bins -p proxy -p benches` first (or pass --proxy-bin)",
            proxy_bin.display()
        )));
    }
    let nofile = idle::raise_nofile((2 * idle_n as u64 + 8192).max(65_536));
    // A proxy holds each idle client connection with one descriptor, but HAProxy reserves two
    // per connection (client + server side) up front and will not start beyond its limit. Every
    // proxy gets the same count, so cap it to what HAProxy can hold under this limit.
    let idle_cap = usize::try_from(nofile / 2)
        .unwrap_or(usize::MAX)
        .saturating_sub(512);
    let idle_n = if idle_n > idle_cap {
        let capped = idle_cap / 1000 * 1000;
        eprintln!(
            "loadbench: RLIMIT_NOFILE {nofile} allows {capped} idle connections, not {idle_n}"
        );
        capped
    } else {
        idle_n
    };
    // One backend thread per proxy worker ("1 worker/thread each"): with one per core, wrk, two
    // backend threads and a single-worker proxy oversubscribed two cores, and p99 measured the
    // scheduler (64 B @ 50, direct: p99 1.2 ms with 2 backend threads, 0.49 ms with 1).
    let threads = args.backend_threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        args.workers.clamp(1, cores)
    });

    let mut report = Report::default();
    let backend = backends::start(args.backend, &exe, threads)?;
    let backend_port = backend.port;
    let setup = ProxySetup {
        backend_port,
        workers: args.workers.max(1),
        // The same connection limits in every mode, sized for the default idle test: HAProxy
        // derives its idle-server-connection cap from them (tune.pool-high-fd-ratio, 25% of
        // its fds), so a --quick run with small limits made it close backend connections
        // after each request at 1000 clients.
        max_conns: idle_n.max(idle_cap.min(10_000) / 1000 * 1000) + 256,
        nofile,
        proxy_bin: proxy_bin.clone(),
        proxy_args: args.proxy_args.clone(),
        proxy_toml: args.proxy_toml.clone(),
        upstream_keepalive: args.upstream_keepalive,
    };
    report.title = format!(
        "req/s, workers = {}, backend {}",
        setup.workers, args.backend
    );
    // Check every target starts before spending minutes on load.
    for k in &kinds {
        drop(targets::start(*k, &setup)?);
    }

    report.notes.push(format!(
        "`loadbench {}` on {} cores; loadavg at start {} (\"other load\": CPU cores busy outside this measurement during each run)",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    report.notes.push(format!(
        "workers = {} for every proxy; backend: {} with {} threads/processes; wrk -t1 --latency, {secs} s per case after {} s warm-up, median of {} round(s) (req/s picks the row; CPU and connects are their own medians); upstream keepalive {}; logs off; connects / req: machine-wide TCP active opens during the run minus wrk's connections",
        setup.workers,
        args.backend,
        threads,
        args.warmup,
        args.rounds.max(1),
        args.upstream_keepalive
    ));
    let git = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    report.notes.push(format!(
        "proxy: {} (source {git}); {}; {}; {}",
        proxy_bin.display(),
        cmd_version("nginx", "-v"),
        cmd_version("haproxy", "-v"),
        cmd_version("wrk", "-v")
    ));

    for case in &cases {
        // Rounds interleave the targets too; the median round (by req/s) is reported.
        let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); kinds.len()];
        for _ in 0..args.rounds.max(1) {
            for (i, kind) in kinds.iter().enumerate() {
                let row = measure(
                    *kind,
                    backend.pid(),
                    case,
                    &setup,
                    args.warmup,
                    secs,
                    &mut report.notes,
                )?;
                if let Some(r) = rounds.get_mut(i) {
                    r.push(row);
                }
            }
        }
        report
            .rows
            .extend(rounds.into_iter().filter_map(report::median_by_rps));
    }

    if idle_n > 0 {
        report.notes.push(format!(
            "idle: {idle_n} keep-alive client connections per proxy (RLIMIT_NOFILE {nofile})"
        ));
        for kind in kinds.iter().filter(|k| **k != Kind::Direct) {
            let t = targets::start(*kind, &setup)?;
            let Some(pid) = t.pid() else { continue };
            // Settle after start-up (worker threads, lazily mapped pools) before the baseline.
            std::thread::sleep(Duration::from_millis(300));
            eprintln!(
                "loadbench: {idle_n} idle keep-alive connections -> {}",
                t.kind
            );
            let before = procfs::tree_status_kib(pid, "VmRSS");
            let addr = SocketAddr::from(([127, 0, 0, 1], t.port));
            let mut conns = idle::open(addr, idle_n, "/small")?;
            // Let the proxy settle (buffers it allocates lazily, deferred frees).
            std::thread::sleep(Duration::from_millis(500));
            let rss = procfs::tree_status_kib(pid, "VmRSS");
            let open_at_end = idle::still_open(&mut conns);
            drop(conns);
            report.idle.push(IdleRow {
                target: t.kind,
                opened: idle_n,
                open_at_end,
                rss_before_kib: before,
                rss_kib: rss,
            });
        }
    }

    drop(backend);
    report.notes.push(format!(
        "total run time {:.0} s",
        started.elapsed().as_secs_f64()
    ));

    let md = report.markdown();
    print!("{md}");
    std::fs::create_dir_all(&args.out).ctx(format_args!("create {}", args.out.display()))?;
    let md_path = args.out.join("results.md");
    std::fs::write(&md_path, &md).ctx(format_args!("write {}", md_path.display()))?;
    let svg_path = args.out.join("results.svg");
    std::fs::write(&svg_path, report.svg()).ctx(format_args!("write {}", svg_path.display()))?;
    eprintln!(
        "loadbench: wrote {} and {}",
        md_path.display(),
        svg_path.display()
    );
    Ok(())
}
