//! Allocator tuning for a long-running daemon on glibc.
//!
//! glibc's defaults suit short programs: a trim threshold that grows to 32 MiB once large blocks are freed, so memory
//! freed at the top of the heap stays mapped, and up to eight arenas per core, each with its own free memory. A
//! supervisor that frees and reallocates the same small buffers thousands of times a second settles at about 5 MiB
//! less resident memory with the threshold fixed at 128 KiB and two arenas (see the footprint bench). An operator's
//! own `MALLOC_TRIM_THRESHOLD_` / `MALLOC_ARENA_MAX` environment settings win.

/// Applies the tuning. Call it before the async runtime starts any thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune_allocator() {
    const TRIM_THRESHOLD: libc::c_int = 128 << 10;
    const ARENAS: libc::c_int = 2;
    if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread is allocating yet.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
    }
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: as above.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    }
    // The trim threshold only returns the top of a heap; free pages in the middle of the arenas (left by buffers of
    // finished checks) go back with `malloc_trim`, a few times a minute.
    let _ = std::thread::Builder::new().name("aegis-trim".into()).spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(TRIM_EVERY_SECS));
            // SAFETY: malloc_trim is thread-safe; it takes each arena's lock in turn.
            unsafe { libc::malloc_trim(0) };
        }
    });
}

/// How often free heap pages are handed back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY_SECS: u64 = 5;

/// Other allocators need no tuning here.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}
