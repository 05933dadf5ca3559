//! Rewrites provision's golden plans (tests/golden/*.plan) from the current code; review the
//! diff before committing. Deliberately not a test: nothing under `cargo test` or `./run test`
//! can regenerate what the golden tests compare against.
//!
//! `cargo run -p provision --example update_golden`

#[path = "../tests/golden/cases.rs"]
mod cases;

fn main() {
    for (family, host) in cases::CASES {
        let path = cases::path(*family, host);
        std::fs::write(&path, cases::render(*family, host))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
    for (family, host) in cases::ANYCAST_CASES {
        let path = cases::anycast_path(*family, host);
        std::fs::write(&path, cases::render_anycast(*family, host))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
}
