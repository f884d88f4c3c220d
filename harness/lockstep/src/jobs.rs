//! Bounded parallelism for independent work items (the kernels of a matrix): at most `jobs` items
//! run at a time, and the results come back in the items' order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The default number of jobs: the cores this process may use.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` applied to every item, with at most `jobs` (at least 1) calls running at once; the
/// results are in the order of `items`. A panic in `f` is propagated once all threads stopped.
pub fn map_ordered<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = jobs.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every item ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_keep_the_items_order_whatever_finishes_first() {
        let items: Vec<u64> = vec![40, 5, 25, 1, 10];
        let out = map_ordered(&items, 3, |&ms| {
            std::thread::sleep(Duration::from_millis(ms));
            ms * 2
        });
        assert_eq!(out, vec![80, 10, 50, 2, 20]);
    }

    #[test]
    fn no_more_than_jobs_items_run_at_once() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<usize> = (0..8).collect();
        let out = map_ordered(&items, 2, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(15));
            running.fetch_sub(1, Ordering::SeqCst);
            i
        });
        assert_eq!(out, items);
        assert_eq!(peak.load(Ordering::SeqCst), 2, "two workers, eight items of equal length");
    }

    #[test]
    fn one_job_runs_on_the_calling_thread() {
        let me = std::thread::current().id();
        let out = map_ordered(&[1, 2, 3], 1, |&x| (x, std::thread::current().id() == me));
        assert_eq!(out, vec![(1, true), (2, true), (3, true)]);
    }
}
