//! Shared by the benchmark clients: `loadgen` (HTTP), `wsload` and
//! `fanout` (websockets).

use std::collections::BTreeMap;
use std::time::Duration;

/// Outcomes counted by kind: `kind:count` pairs, comma-separated.
pub fn kinds(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(kind, n)| format!("{kind}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Counts one outcome of `kind` (spaces made `_`, so a report stays one
/// line of `key=value` pairs).
pub fn count(counts: &mut BTreeMap<String, usize>, kind: &str) {
    *counts.entry(kind.replace(' ', "_")).or_default() += 1;
}

/// Raises this process's open-file limit to its hard limit.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The `p` percentile (0–1) of `sorted`, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}
