//! memory — what an idle daemon keeps resident, and handing the rest back (issue 16).
//!
//! Measured on the bench host (release build, 50 files, 10 services): of 19.5 MB resident,
//! 14 MB were clean pages of strackt's own executable and 2.5 MB of its shared libraries (a
//! pass touches code all over a 12 MB text segment, and the kernel's fault-around maps the
//! neighbours of every page touched), and 4 MB anonymous memory: malloc's heap and one arena
//! per thread that ever allocated, each holding freed memory. Nothing ever gave any of it back
//! while the daemon slept between passes.
//!
//! - [`limit_arenas`], once at start before any thread: two malloc arenas for the whole
//!   process instead of one per thread (blocking-pool threads, the HTTP thread, the watcher).
//! - [`release`], when the loop has been idle for a while: `malloc_trim` returns freed heap
//!   and arena memory to the kernel, and `MADV_DONTNEED` unmaps the clean pages of
//!   read-only file mappings (the executable's code and read-only data, the libraries'). Those
//!   pages stay in the page cache: the next pass maps them back with minor faults and no I/O,
//!   as after the kernel had reclaimed them under memory pressure, which it may do at any time.
//!
//! It must never touch memory whose content exists only in this process: a mapping is released
//! only when `/proc/self/smaps` shows it private, not writable, backed by a file, and holding
//! no anonymous (copy-on-write) page — so what is dropped is exactly what the file holds. It
//! does nothing on a libc other than glibc (no `malloc_trim`) except the unmapping.

use std::time::Duration;

/// How long the loop must have been idle (no pass, no request) before [`release`] runs: long
/// enough that back-to-back requests (`strackt apply` in a script, a burst of saves) keep
/// their code mapped, short enough that a daemon waiting for its next timer pass is lean.
const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// When to [`release`] if nothing else happens: [`IDLE_RELEASE`] from now.
pub(super) fn idle_deadline() -> Option<tokio::time::Instant> {
    Some(tokio::time::Instant::now() + IDLE_RELEASE)
}

/// One mapping of `/proc/self/smaps` that may be released: start address and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Releasable {
    start: usize,
    len: usize,
}

/// The mappings of an smaps listing that hold only a file's own bytes and are resident: private,
/// not writable, backed by a file (inode ≠ 0), no anonymous pages, `Rss` > 0. A mapping whose
/// fields cannot be read is left alone.
fn releasable(smaps: &str) -> Vec<Releasable> {
    let mut out = Vec::new();
    // The mapping being read: (start, len, candidate by its header), and its Rss/Anonymous.
    let mut current: Option<(usize, usize, bool)> = None;
    let (mut rss, mut anon): (Option<u64>, Option<u64>) = (None, None);
    let mut flush = |current: Option<(usize, usize, bool)>, rss: Option<u64>, anon: Option<u64>| {
        if let (Some((start, len, true)), Some(r), Some(0)) = (current, rss, anon) {
            if r > 0 {
                out.push(Releasable { start, len });
            }
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            // A header: "start-end perms offset dev inode [path]".
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                flush(current, rss, anon);
                let perms = fields.next().unwrap_or("");
                let inode = fields.nth(2).unwrap_or("0");
                let candidate = perms.len() == 4
                    && perms.starts_with('r')
                    && perms.as_bytes()[1] == b'-'
                    && perms.ends_with('p')
                    && inode != "0";
                current = Some((start, end.saturating_sub(start), candidate));
                (rss, anon) = (None, None);
                continue;
            }
        }
        let value = || fields.clone().next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => rss = value(),
            "Anonymous:" => anon = value(),
            _ => {}
        }
    }
    flush(current, rss, anon);
    out
}

/// At most two malloc arenas for the process (glibc gives each thread its own by default, and
/// each keeps what its thread freed). Call before any thread is started.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a parameter of glibc's allocator; M_ARENA_MAX is a valid
        // parameter and any positive value is valid for it. Its result is not looked at: a
        // refusal only leaves glibc's default, more memory and nothing else.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
}

/// Hand back to the kernel what the idle daemon does not need resident (see the module doc).
/// Returns the bytes of mappings released, for the log.
pub(super) fn release() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free memory of glibc's arenas to the kernel; it is
        // safe to call at any time from any thread. Its result (whether anything was handed
        // back) is not an error; what was released is counted below from smaps.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::malloc_trim(0) };
    }
    let smaps = match crate::host::usage::own_smaps() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("reading /proc/self/smaps: {e}");
            return 0;
        }
    };
    let mut released = 0;
    for m in releasable(&smaps) {
        // SAFETY: the range is one whole mapping of this process that smaps showed private,
        // read-only, file-backed and free of anonymous pages: MADV_DONTNEED only unmaps pages
        // whose content is the file's, and the next access maps the same bytes back from the
        // page cache (the file cannot change under a running executable: ETXTBSY; a library
        // rewritten in place would break the process under memory pressure just the same).
        // No Rust reference is invalidated: the memory reads the same before and after.
        #[allow(unsafe_code)]
        let r = unsafe { libc::madvise(m.start as *mut libc::c_void, m.len, libc::MADV_DONTNEED) };
        if r == 0 {
            released += m.len;
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
562f7133b000-562f7168f000 r--p 00000000 fe:00 10028659                   /opt/strackt/strackt
Rss:                2176 kB
Anonymous:             0 kB
562f7168f000-562f722ed000 r-xp 00353000 fe:00 10028659                   /opt/strackt/strackt
Size:              12664 kB
Rss:               11416 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
562f722ed000-562f72430000 r--p 00fb0000 fe:00 10028659                   /opt/strackt/strackt
Rss:                1276 kB
Anonymous:          1200 kB
562f72430000-562f72437000 rw-p 010f2000 fe:00 10028659                   /opt/strackt/strackt
Rss:                  28 kB
Anonymous:            28 kB
562f7fea3000-562f80029000 rw-p 00000000 00:00 0                          [heap]
Rss:                1424 kB
Anonymous:          1424 kB
7f3037a15000-7f3037a1d000 rw-s 00000000 00:29 1509675                    /var/lib/strackt/state.db-shm
Rss:                  32 kB
Anonymous:             0 kB
7f3037c49000-7f3037d9f000 r-xp 00026000 00:29 1393556                    /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1240 kB
Anonymous:             0 kB
7f3037e15000-7f3037e89000 r-xp 00010000 00:29 1393305                    /usr/lib/x86_64-linux-gnu/libm.so.6
Rss:                   0 kB
Anonymous:             0 kB
7f3037f05000-7f3037f06000 ---p 00000000 00:00 0
Rss:                   0 kB
Anonymous:             0 kB
7ffcd7590000-7ffcd7591000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
7ffcd7591000-7ffcd7592000 r-xp 00000000 00:00 0                          [vsyscall]
Rss:                   4 kB
";

    #[test]
    fn only_resident_read_only_private_file_mappings_without_anonymous_pages_are_released() {
        let got = releasable(SMAPS);
        assert_eq!(
            got,
            [
                // The executable's read-only data and its code.
                Releasable {
                    start: 0x562f_7133_b000,
                    len: 0x354_000
                },
                Releasable {
                    start: 0x562f_7168_f000,
                    len: 0xc5e_000
                },
                // libc's code; libm's is not resident, so there is nothing to release.
                Releasable {
                    start: 0x7f30_37c4_9000,
                    len: 0x156_000
                },
            ]
        );
    }

    #[test]
    fn a_mapping_whose_anonymous_count_is_missing_is_left_alone() {
        let smaps = "7f00-8f00 r--p 00000000 fe:00 12 /usr/lib/x\nRss: 4 kB\n";
        assert_eq!(releasable(smaps), []);
    }

    #[test]
    fn release_unmaps_this_process_code_and_leaves_it_working() {
        // The test binary's own code is resident (it is running): some of it is released, and
        // what runs next (and the data it reads) is mapped back unchanged.
        let text = String::from("still here");
        assert!(release() > 0, "nothing released");
        assert_eq!(text, "still here");
        assert!(release() > 0, "nothing released the second time");
    }
}
