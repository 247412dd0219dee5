//! The metrics recorder keeps every histogram sample (~16 bytes) until it is folded into its
//! buckets, which the recorder does only when asked: by a scrape of `/metrics`, or by `serve`'s
//! upkeep every `SHIPGATE_METRICS_UPKEEP_MS`. Without the upkeep a process that nobody scrapes
//! grows for ever. Its own test binary: it counts the process's live heap with a counting
//! allocator, which other tests running beside it would disturb.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use shipgate::server::Options;

/// Bytes allocated and not yet freed, by the whole process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; only the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// About 33 MB of samples while they are kept (16.5 bytes each, measured).
const SAMPLES: u64 = 2_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_samples_are_folded_without_a_scrape() {
    // Recorded before the App starts, so that nothing folds them while they are counted.
    shipgate::metrics::install().expect("the recorder");
    let before = LIVE.load(Relaxed);
    let histogram = metrics::histogram!("shipgate_webhook_ingest_seconds");
    for _ in 0..SAMPLES {
        histogram.record(0.001);
    }
    let grown = LIVE.load(Relaxed) - before;
    assert!(
        grown > SAMPLES as isize * 8,
        "{SAMPLES} samples grew the heap by only {grown} bytes: the test measures nothing"
    );

    let db = common::TestDb::sqlite().await;
    let mut cfg = db.config();
    cfg.metrics_upkeep = Duration::from_millis(50);
    let app = common::TestApp::start_with(cfg, Options::default()).await;

    // No scrape: only the App's upkeep can fold them. What the App itself holds once started
    // (a few MB) stays under the quarter left.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = LIVE.load(Relaxed) - before;
        if held < grown / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the App started, the heap still holds {held} of the {grown} bytes that {SAMPLES} samples \
             took: nothing folds the histograms' samples into their buckets when nobody reads /metrics"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Folded, not dropped: every sample is counted.
    let page = app.http.get(format!("{}/metrics", app.url)).send().await.expect("GET /metrics");
    let page = page.text().await.expect("body");
    let count = page
        .lines()
        .find_map(|l| l.strip_prefix("shipgate_webhook_ingest_seconds_count "))
        .unwrap_or_else(|| panic!("no count of the histogram in /metrics:\n{page}"));
    assert_eq!(count.trim(), SAMPLES.to_string());
    app.shutdown().await;
}
