//! Helper threads that spin while one image runs, so each operation's split across cores starts in
//! nanoseconds instead of a thread pool's wake-up. An image at 640 is about a hundred operations, many of
//! them under 0.2 ms at 20x20; handing each to rayon cost 1.37-1.53x scaling on those instead of 2x
//! (yolo11n, 2 cores). Outside a [`Session`] the helpers sleep on a condition variable.
//!
//! Written here rather than taken from a crate: rayon has no spinning mode, and the protocol is small (one
//! posted job at a time, chunks claimed with an atomic counter).

use crate::clock::Instant;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

type Job = dyn Fn(usize, usize) + Sync;

/// The job a team holds before its first.
fn nothing(_: usize, _: usize) {}
static NOTHING: fn(usize, usize) = nothing;

/// The job being run: a lifetime-erased pointer to the caller's closure and how it is split.
struct Posted {
    job: *const Job,
    n: usize,
    chunks: usize,
}

// SAFETY: `job` points to a `Sync` closure; it is only called for a chunk claimed while the poster waits
// in `run` for every claimed chunk to finish, so the closure outlives every call through the pointer.
unsafe impl Send for Posted {}
// SAFETY: as above; readers only call the `Sync` closure.
unsafe impl Sync for Posted {}

struct Shared {
    /// Bumped for every posted job; helpers spin until it moves.
    epoch: AtomicUsize,
    slot: RwLock<Posted>,
    next: AtomicUsize,
    done: AtomicUsize,
    /// True during a session: helpers spin instead of sleeping. Set under `sleep`'s lock so a helper about
    /// to wait on `wake` cannot miss the change.
    spinning: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Shared {
    /// Claims and runs chunks of the posted job until none is left.
    fn work(&self, p: &Posted) {
        loop {
            let c = self.next.fetch_add(1, Ordering::AcqRel);
            if c >= p.chunks {
                return;
            }
            // SAFETY: a chunk below `chunks` was claimed before the poster saw it done, so the poster is
            // still waiting in `run` and the closure is alive (see `Posted`).
            let job = unsafe { &*p.job };
            job(c * p.n / p.chunks, (c + 1) * p.n / p.chunks);
            self.done.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn helper(&self) {
        let mut seen = self.epoch.load(Ordering::Acquire);
        let mut idle = Backoff::default();
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if !self.spinning.load(Ordering::Acquire) {
                let Ok(mut g) = self.sleep.lock() else {
                    return;
                };
                while !self.spinning.load(Ordering::Acquire) && !self.stop.load(Ordering::Acquire) {
                    g = match self.wake.wait(g) {
                        Ok(g) => g,
                        Err(_) => return,
                    };
                }
                continue;
            }
            let e = self.epoch.load(Ordering::Acquire);
            if e == seen {
                idle.pause();
                continue;
            }
            idle = Backoff::default();
            seen = e;
            if let Ok(p) = self.slot.read() {
                self.work(&p);
            }
        }
    }
}

/// The helper threads of one engine (created at its first parallel image).
#[derive(Default)]
pub(crate) struct Team {
    inner: Mutex<Option<Crew>>,
}

struct Crew {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Shared {
    /// Sets `flag` under the sleep lock and wakes every helper to look at it.
    fn signal(&self, flag: &AtomicBool, value: bool) {
        let g = self.sleep.lock();
        flag.store(value, Ordering::Release);
        drop(g);
        self.wake.notify_all();
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.shared.signal(&self.shared.stop, true);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// While alive, `par_ranges` on this thread splits work with the team's spinning helpers.
pub(crate) struct Session<'a> {
    _guard: MutexGuard<'a, Option<Crew>>,
    shared: Arc<Shared>,
}

impl Team {
    /// Starts a session for `threads` threads in all (this one included), or `None` when another image holds
    /// the team (that run then splits through rayon) or one thread is all there is.
    pub(crate) fn session(&self, threads: usize) -> Option<Session<'_>> {
        if threads < 2 {
            return None;
        }
        let mut guard = self.inner.try_lock().ok()?;
        if guard
            .as_ref()
            .is_none_or(|c| c.handles.len() != threads - 1)
        {
            *guard = None;
            let shared = Arc::new(Shared {
                epoch: AtomicUsize::new(0),
                slot: RwLock::new(Posted {
                    job: &NOTHING as &Job as *const Job,
                    n: 0,
                    chunks: 0,
                }),
                next: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                spinning: AtomicBool::new(false),
                sleep: Mutex::new(()),
                wake: Condvar::new(),
                stop: AtomicBool::new(false),
            });
            // The crew first, so a failed spawn drops it and stops the helpers already started.
            let mut crew = Crew {
                shared,
                handles: Vec::new(),
            };
            for i in 0..threads - 1 {
                let s = crew.shared.clone();
                let h = std::thread::Builder::new()
                    .name(format!("engine-helper-{i}"))
                    .spawn(move || s.helper())
                    .ok()?;
                crew.handles.push(h);
            }
            *guard = Some(crew);
        }
        let shared = guard.as_ref()?.shared.clone();
        shared.signal(&shared.spinning, true);
        CURRENT.with(|c| *c.borrow_mut() = Some(shared.clone()));
        Some(Session {
            _guard: guard,
            shared,
        })
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
        self.shared.spinning.store(false, Ordering::Release);
    }
}

/// Runs `job` over `0..n` in `chunks` pieces with this thread's session, if it has one; false when it has
/// none (the caller splits some other way).
pub(crate) fn run(n: usize, chunks: usize, job: &(dyn Fn(usize, usize) + Sync + '_)) -> bool {
    let Some(shared) = CURRENT.with(|c| c.borrow().clone()) else {
        return false;
    };
    {
        let Ok(mut p) = shared.slot.write() else {
            return false;
        };
        // SAFETY: only the lifetime is erased (same fat pointer); the pointer is called only for claimed
        // chunks, all of which finish before this function returns (the wait below).
        let job: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), *const Job>(job) };
        *p = Posted { job, n, chunks };
        shared.next.store(0, Ordering::Release);
        shared.done.store(0, Ordering::Release);
        shared.epoch.fetch_add(1, Ordering::AcqRel);
    }
    if let Ok(p) = shared.slot.read() {
        shared.work(&p);
    }
    let mut idle = Backoff::default();
    while shared.done.load(Ordering::Acquire) < chunks {
        idle.pause();
    }
    true
}

/// Waiting: spin hints for a while, then yielding the core, so a machine with more busy threads than cores
/// (tests in parallel, two engines at once) still lets the thread being waited for run.
#[derive(Default)]
struct Backoff {
    spins: u32,
    since: Option<Instant>,
}

impl Backoff {
    fn pause(&mut self) {
        self.spins = self.spins.wrapping_add(1);
        if !self.spins.is_multiple_of(256) {
            std::hint::spin_loop();
            return;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() < SPIN_FOR {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Longer than the gap between two operations of one image, short next to one image.
const SPIN_FOR: Duration = Duration::from_micros(200);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Every index of every job is visited exactly once, over many jobs posted back to back (the helpers
    /// never see a stale or a torn job), including jobs of fewer items than chunks.
    #[test]
    fn every_index_runs_once_per_job() {
        let team = Team::default();
        let session = team.session(3).expect("a free team");
        for round in 0..2000usize {
            let n = 1 + round % 97;
            let chunks = n.min(1 + round % 11);
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            let job = |a: usize, b: usize| {
                for h in &hits[a..b] {
                    h.fetch_add(1, Ordering::Relaxed);
                }
            };
            assert!(run(n, chunks, &job));
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
        }
        drop(session);
        // Outside a session the caller splits another way.
        assert!(!run(4, 2, &|_, _| {}));
    }

    /// A team is one image's at a time: a second session waits for none (it gets `None`), and a session
    /// after the first ends reuses the same helpers.
    #[test]
    fn one_session_at_a_time() {
        let team = Team::default();
        let first = team.session(2).expect("a free team");
        std::thread::scope(|s| {
            s.spawn(|| assert!(team.session(2).is_none()));
        });
        drop(first);
        let again = team.session(2).expect("free again");
        assert!(run(10, 4, &|_, _| {}));
        drop(again);
        assert!(team.session(1).is_none(), "one thread needs no helpers");
    }
}
