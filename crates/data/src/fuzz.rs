//! A small mutation fuzzer for the parsers' tests (`tests/fuzz.rs` in data and model): seeds from a
//! committed corpus are mutated (bit flips, boundary bytes, inserted/deleted/duplicated runs, splices,
//! and for text inputs numbers swapped for boundary values) and fed to a target for a time budget. The
//! property checked: the target returns (an error or a result), never panics and never hangs; an abort
//! (say, an allocation of input-sized gigabytes) ends the test process, which fails the test too.
//!
//! Written here rather than with cargo-fuzz, which needs a nightly toolchain CI does not have; runs are
//! deterministic for a seed (`YOLO_FUZZ_SEED`), and `YOLO_FUZZ_SECS` sets the budget per target.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// splitmix64: small, fast, and the same stream everywhere for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING_BYTES: [u8; 8] = [0, 1, 0x7F, 0x80, 0xFF, b'\n', b'\r', b'-'];
const INTERESTING_NUMBERS: [&str; 14] = [
    "0",
    "-1",
    "1",
    "2",
    "-0.5",
    "1e30",
    "-1e30",
    "nan",
    ".inf",
    "99999999999",
    "4294967296",
    "0.0",
    "65536",
    "3.5",
];

fn mutate(input: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = v.len();
        match rng.below(9) {
            0 if n > 0 => {
                let i = rng.below(n);
                v[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                v[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            2 => {
                let i = rng.below(n + 1);
                let b = rng.next() as u8;
                v.insert(i, b);
            }
            3 if n > 1 => {
                let i = rng.below(n);
                let len = 1 + rng.below((n - i).min(64));
                v.drain(i..i + len);
            }
            4 if n > 1 => {
                let i = rng.below(n);
                let len = 1 + rng.below((n - i).min(64));
                let run: Vec<u8> = v[i..i + len].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, run);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let len = 1 + rng.below((other.len() - i).min(256));
                    let at = rng.below(v.len() + 1);
                    v.splice(at..at, other[i..i + len].iter().copied());
                }
            }
            6 | 7 => replace_number(&mut v, rng),
            _ if n > 0 => {
                // Truncate: files cut short are the commonest real corruption.
                v.truncate(rng.below(n));
            }
            _ => {}
        }
    }
    v
}

/// Replaces one run of ASCII digits (with its sign and decimals) by a boundary value.
fn replace_number(v: &mut Vec<u8>, rng: &mut Rng) {
    let starts: Vec<usize> = (0..v.len())
        .filter(|&i| v[i].is_ascii_digit() && (i == 0 || !v[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let mut s = starts[rng.below(starts.len())];
    if s > 0 && v[s - 1] == b'-' {
        s -= 1;
    }
    let mut e = s + 1;
    while e < v.len() && (v[e].is_ascii_digit() || v[e] == b'.' || v[e] == b'e') {
        e += 1;
    }
    let with = INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())];
    v.splice(s..e, with.bytes());
}

/// Every file of a corpus folder, sorted by name.
pub fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// The seeds of `target` in a crate's `tests/fuzz_corpus/` (`crate_dir` is its `CARGO_MANIFEST_DIR`).
pub fn seeds(crate_dir: &str, target: &str) -> Vec<Vec<u8>> {
    corpus(&Path::new(crate_dir).join("tests/fuzz_corpus").join(target))
}

/// Where failing inputs are saved.
pub fn crash_dir() -> PathBuf {
    std::env::temp_dir().join("yolo-fuzz-crashes")
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub executions: u64,
    pub seed: u64,
}

/// Feeds the seeds, then mutations of them, to `target` until `budget` is spent. Returns an error naming
/// the input (saved under `crash_dir`) that panicked, or the one running when a single input took longer
/// than `hang`.
pub fn fuzz(
    name: &str,
    seeds: Vec<Vec<u8>>,
    budget: Duration,
    hang: Duration,
    crash_dir: &Path,
    target: impl Fn(&[u8]) + Send + Sync + 'static,
) -> Result<Report, String> {
    if seeds.is_empty() {
        return Err(format!("{name}: empty seed corpus"));
    }
    let seed: u64 = std::env::var("YOLO_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let current = Arc::new(Mutex::new(Vec::<u8>::new()));
    let progress = Arc::new(AtomicU64::new(0));
    let (cur, prog) = (current.clone(), progress.clone());
    let worker = std::thread::spawn(move || -> Result<u64, Vec<u8>> {
        let mut rng = Rng(seed ^ 0x5EED);
        let start = Instant::now();
        let mut n = 0u64;
        let previous_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = loop {
            let input = if (n as usize) < seeds.len() {
                seeds[n as usize].clone()
            } else if start.elapsed() >= budget {
                break Ok(n);
            } else {
                let base = &seeds[rng.below(seeds.len())];
                mutate(base, &seeds, &mut rng)
            };
            if let Ok(mut c) = cur.lock() {
                c.clone_from(&input);
            }
            if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                break Err(input);
            }
            n += 1;
            prog.store(n, Ordering::SeqCst);
        };
        std::panic::set_hook(previous_hook);
        result
    });
    let save = |input: &[u8], kind: &str| -> String {
        let _ = std::fs::create_dir_all(crash_dir);
        let p = crash_dir.join(format!("{name}-{kind}-seed{seed}.bin"));
        let _ = std::fs::write(&p, input);
        p.display().to_string()
    };
    let mut last = (0u64, Instant::now());
    loop {
        if worker.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        let n = progress.load(Ordering::SeqCst);
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > hang {
            let input = current.lock().map(|c| c.clone()).unwrap_or_default();
            return Err(format!(
                "{name}: an input ran over {hang:?} (a hang?); saved to {}",
                save(&input, "hang")
            ));
        }
    }
    match worker.join() {
        Ok(Ok(executions)) => Ok(Report { executions, seed }),
        Ok(Err(input)) => Err(format!(
            "{name}: an input panicked; saved to {} (YOLO_FUZZ_SEED={seed} reproduces the run)",
            save(&input, "panic")
        )),
        Err(_) => Err(format!("{name}: the fuzzer itself panicked")),
    }
}

/// The budget per target: `YOLO_FUZZ_SECS`, else `default_secs`.
pub fn budget(default_secs: f64) -> Duration {
    Duration::from_secs_f64(
        std::env::var("YOLO_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_secs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_target_is_reported_with_its_input() {
        let dir = std::env::temp_dir().join(format!("yolo-fuzz-self-{}", std::process::id()));
        let r = fuzz(
            "self",
            vec![b"ok 12".to_vec()],
            Duration::from_secs(5),
            Duration::from_secs(5),
            &dir,
            |b| assert!(!b.contains(&b'-'), "found a minus"),
        );
        let e = r.expect_err("some mutation inserts a '-'");
        assert!(e.contains("panicked") && e.contains("self-panic"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_hanging_target_is_reported() {
        let dir = std::env::temp_dir().join(format!("yolo-fuzz-hang-{}", std::process::id()));
        let r = fuzz(
            "hang",
            vec![b"a".to_vec()],
            Duration::from_secs(5),
            Duration::from_millis(300),
            &dir,
            |_| std::thread::sleep(Duration::from_secs(2)),
        );
        assert!(r.expect_err("the sleep is a hang").contains("ran over"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
