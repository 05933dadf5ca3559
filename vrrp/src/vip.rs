//! vip
