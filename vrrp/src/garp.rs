//! garp
