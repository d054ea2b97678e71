//! `tpool::execute` is not interruptible: a kill or a timeout waits until the borrowed job has
//! finished, then lands.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{drive_until, Watchdog, LONG};
use filature::green::{self, JoinError};
use filature::tpool::Tpool;
use filature::TimedOut;

/// Counts its drop, and records whether the job had finished when it was dropped.
struct DropProbe {
    drops: Rc<Cell<u32>>,
    job_finished_at_drop: Rc<Cell<Option<bool>>>,
    job_finished: Arc<AtomicBool>,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
        self.job_finished_at_drop
            .set(Some(self.job_finished.load(Ordering::SeqCst)));
    }
}

#[test]
fn a_killed_caller_unwinds_only_after_its_borrowed_job_finished() {
    let _w = Watchdog::new("kill held back", LONG);
    let pool = Tpool::new("kill", 1);
    let drops = Rc::new(Cell::new(0));
    let at_drop = Rc::new(Cell::new(None));
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let after_execute = Rc::new(Cell::new(false));
    let probe = DropProbe {
        drops: drops.clone(),
        job_finished_at_drop: at_drop.clone(),
        job_finished: finished.clone(),
    };
    let (s, f, after) = (started.clone(), finished.clone(), after_execute.clone());
    let h = green::spawn(move || {
        let _probe = probe;
        let mut buf = [0u8; 32];
        pool.execute(|| {
            s.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(150));
            buf.fill(9); // writes into the parked green thread's stack
            f.store(true, Ordering::SeqCst);
        });
        after.set(true);
        buf
    });
    drive_until(LONG, || started.load(Ordering::SeqCst));
    h.kill();
    // The job is still sleeping: the kill must not land yet.
    green::sleep(Duration::from_millis(30));
    assert_eq!(
        drops.get(),
        0,
        "the caller unwound while its job was running"
    );
    assert!(!h.is_finished());
    let r = h.join_timeout(LONG);
    assert!(
        matches!(r, Err(green::JoinTimeoutError::Failed(JoinError::Killed))),
        "{r:?}"
    );
    assert_eq!(drops.get(), 1);
    assert_eq!(
        at_drop.get(),
        Some(true),
        "the job had finished before the unwind"
    );
    assert!(!after_execute.get(), "the kill landed as execute returned");
}

#[test]
fn killing_one_waiting_caller_leaves_the_others_alone() {
    let _w = Watchdog::new("kill others", LONG);
    let pool = Tpool::new("kill-others", 2);
    let p = pool.clone();
    let victim = green::spawn(move || p.execute(|| std::thread::sleep(Duration::from_millis(60))));
    let p = pool.clone();
    let bystander =
        green::spawn(move || p.execute(|| std::thread::sleep(Duration::from_millis(60))));
    green::sleep(Duration::from_millis(10));
    victim.kill();
    bystander.join();
    assert!(matches!(victim.join_result(), Err(JoinError::Killed)));
}

#[test]
fn with_timeout_does_not_cut_a_job_short_in_a_green_thread() {
    let _w = Watchdog::new("timeout green", LONG);
    let pool = Tpool::new("timeout", 1);
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let g = green::spawn(move || {
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let r = green::with_timeout(Duration::from_millis(10), || {
            pool.execute(|| {
                std::thread::sleep(Duration::from_millis(80));
                buf.fill(3);
                f.store(true, Ordering::SeqCst);
            })
        });
        (r, start.elapsed(), buf)
    });
    let (r, elapsed, buf) = g.join();
    assert_eq!(
        r,
        Err(TimedOut),
        "the expiry is raised once the job returned"
    );
    assert!(elapsed >= Duration::from_millis(80), "{elapsed:?}");
    assert!(finished.load(Ordering::SeqCst));
    assert_eq!(buf, [3; 8]);
}

#[test]
fn with_timeout_does_not_cut_a_job_short_in_the_main_context() {
    let _w = Watchdog::new("timeout main", LONG);
    let pool = Tpool::new("timeout-main", 1);
    let start = Instant::now();
    let mut buf = [0u8; 8];
    let r = green::with_timeout(Duration::from_millis(10), || {
        pool.execute(|| {
            std::thread::sleep(Duration::from_millis(80));
            buf.fill(4);
        })
    });
    assert_eq!(r, Err(TimedOut));
    assert!(start.elapsed() >= Duration::from_millis(80));
    assert_eq!(buf, [4; 8]);
    // Nothing stays pending: the next wait is not interrupted.
    assert_eq!(
        green::with_timeout(Duration::from_secs(5), || pool.execute(|| 5)),
        Ok(5)
    );
}
