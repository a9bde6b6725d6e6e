//! No build step: this script exists so that `[build-dependencies]` can pin host-side features (Cargo.toml says why).
fn main() {}
