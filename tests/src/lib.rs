//! End-to-end tests that cross crates live in `tests/tests/`.
//!
//! They drive the built binaries (`lab`, `proxy`, `vrrp` in `target/<profile>/`), so build them
//! first: `cargo build --bins && cargo test -p e2e` (`./run test` does both). The lab tests need
//! root (network namespaces) and fail, rather than pass silently, without it.
