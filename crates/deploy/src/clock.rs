//! The clock: `std::time::Instant` panics in a browser (wasm32-unknown-unknown has no clock in std), where
//! `web_time` reads `performance.now()` instead.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use web_time::Instant;

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use std::time::Instant;
