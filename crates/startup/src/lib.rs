//! The binaries' edge. What they call first thing in `main`, before any thread starts: the process-wide
//! settings (allocator tunables, environment) that the libraries must not make themselves, since a library may
//! live in a program with its own allocator and environment. And how they end: an error and its causes on
//! one line.

use std::process::ExitCode;

/// Applies [`keep_freed_memory`] and [`quiet_vulkan_loader`].
pub fn init() {
    keep_freed_memory();
    quiet_vulkan_loader();
}

/// Keeps freed tensor buffers in the heap instead of handing them back to the kernel. With glibc's
/// defaults every tensor above a few MB is a fresh mmap (page faults, zeroing) and every free an munmap
/// (a TLB shootdown on each core): a training step at 320 px spent ~12% of its time there
/// (`bench_step`: 1.36 s -> 1.2-1.28 s per batch of 8). Allocator crates measured slower here: mimalloc
/// (5.55-5.89 vs 6.27-6.83 images/s) and jemalloc (1.4-1.9 vs 2.8-3.7 images/s, `bench_step` at 320 px).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before other threads start.
    unsafe {
        // 32 MiB is glibc's largest mmap threshold; trimming only past 1 GiB of free heap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Mesa's Vulkan loader probes Wayland and prints an error for each wgpu instance when XDG_RUNTIME_DIR is
/// unset (a server, a container); the probe needs nothing from it, so any existing folder will do.
pub fn quiet_vulkan_loader() {
    #[cfg(unix)]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
}

/// Ends `main`: success, or `Error: ` and [`message`] on stderr and exit status 1.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", each cause left out when the text before it already says it (the
/// libraries' errors show their source in their own message and keep it as `source()` too).
pub fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text += ": ";
        }
        text += &c;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::message;
    use anyhow::Context;

    #[test]
    fn causes_already_said_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Err::<(), _>(io).context("a.yaml: cannot read").unwrap_err();
        assert_eq!(message(&e), "a.yaml: cannot read: no such file");
        let e = e.context("a.yaml: cannot read: no such file while loading");
        assert_eq!(
            message(&e),
            "a.yaml: cannot read: no such file while loading"
        );
    }
}
