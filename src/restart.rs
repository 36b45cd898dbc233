//! Warm restart: after a clean shutdown the caches come back with the server, as
//! pg_stat_statements keeps its statistics. The postmaster dumps every live entry
//! when it exits after a clean shutdown (to a temporary file, fsynced, renamed), and
//! loads the dump when it next creates shared memory, then removes it.
//!
//! A dump is loaded only when the server starts from the very shutdown checkpoint it
//! was written at (same system, timeline and checkpoint, and the control file still
//! says "shut down"): after a crash, a restored backup, point-in-time recovery or a
//! standby started from the directory nothing is loaded, since WAL replayed after
//! that checkpoint may hold invalidations the dump predates. A dump is removed at
//! every start, loaded or not, so that it can never be loaded later.

use std::ffi::c_int;
use std::fs::File;
use std::io::{self, Read, Write};
use std::time::Instant;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::{gucs, pg, registry, shmem};

const DUMP: &str = "pg_stat/pg_cache.dump";
const DUMP_TMP: &str = "pg_stat/pg_cache.dump.tmp";
const MAGIC: &[u8; 8] = b"PGCWARM1";
const HEADER: usize = 8 + 8 + 4 + 8;

/// Where a cleanly shut down server stands: what a dump is tied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShutdownPoint {
    system: u64,
    timeline: u32,
    checkpoint: u64,
}

impl ShutdownPoint {
    fn bytes(&self) -> [u8; HEADER] {
        let mut out = [0u8; HEADER];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.system.to_le_bytes());
        out[16..20].copy_from_slice(&self.timeline.to_le_bytes());
        out[20..28].copy_from_slice(&self.checkpoint.to_le_bytes());
        out
    }

    fn read(b: &[u8; HEADER]) -> Option<ShutdownPoint> {
        (&b[..8] == MAGIC).then(|| ShutdownPoint {
            system: u64::from_le_bytes(b[8..16].try_into().unwrap_or_default()),
            timeline: u32::from_le_bytes(b[16..20].try_into().unwrap_or_default()),
            checkpoint: u64::from_le_bytes(b[20..28].try_into().unwrap_or_default()),
        })
    }
}

/// The control file's shutdown checkpoint, if it says the server was shut down
/// cleanly as a primary (a standby's shutdown says "shut down in recovery").
fn shutdown_point() -> Option<ShutdownPoint> {
    // SAFETY: reads global/pg_control of this data directory into palloc'd memory,
    // freed below; DataDir is set before shared memory is created.
    unsafe {
        let mut crc_ok = false;
        let cf = pg_sys::get_controlfile(pg_sys::DataDir, &mut crc_ok);
        if cf.is_null() {
            return None;
        }
        let point = (crc_ok && (*cf).state == pg_sys::DBState::DB_SHUTDOWNED).then(|| ShutdownPoint {
            system: (*cf).system_identifier,
            timeline: (*cf).checkPointCopy.ThisTimeLineID,
            checkpoint: (*cf).checkPoint,
        });
        pg_sys::pfree(cf.cast());
        point
    }
}

static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// Chains a startup hook after `shmem`'s (installed before this): once the region
/// exists, the postmaster loads the dump into it and registers the next dump.
pub fn install_hooks() {
    // SAFETY: _PG_init runs in the postmaster before any other process exists.
    unsafe {
        PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup_hook);
    }
}

#[pg_guard]
extern "C-unwind" fn startup_hook() {
    // SAFETY: the hook chain PostgreSQL calls while it creates shared memory.
    unsafe {
        if let Some(prev) = PREV_STARTUP_HOOK {
            prev();
        }
    }
    if shmem::created_in_postmaster() {
        load_at_start();
        // Again after a crash restart: it ran the callbacks (with a non-zero code)
        // and cleared them.
        // SAFETY: registers a callback of this process (the postmaster).
        unsafe { pg_sys::on_shmem_exit(Some(dump_at_exit), pg_sys::Datum::from(0)) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn dump_at_exit(code: c_int, _arg: pg_sys::Datum) {
    // Not after a crash or a failed start: only a clean shutdown leaves a consistent
    // cache behind.
    if code != 0 || !gucs::warm_restart() {
        return;
    }
    let Some(point) = shutdown_point() else { return };
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| write_dump(point)).unwrap_or_else(|_| Err(io::Error::other("a panic")));
    match outcome {
        Ok(c) => log!(
            "pg_cache: dumped {} entries of {} caches ({} MB) for a warm restart in {} ms",
            c.entries,
            c.caches,
            c.bytes >> 20,
            started.elapsed().as_millis()
        ),
        Err(e) => {
            let _ = std::fs::remove_file(DUMP_TMP);
            log!("pg_cache: no dump for a warm restart: {e}");
        }
    }
}

fn write_dump(point: ShutdownPoint) -> io::Result<pg_cache_core::store::DumpCounts> {
    let file = File::create(DUMP_TMP)?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&point.bytes())?;
    let counts = shmem::store().dump(&mut out, pg::now())?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(DUMP_TMP, DUMP)?;
    File::open("pg_stat")?.sync_all()?;
    Ok(counts)
}

/// Loads the dump into a region just created, if it belongs to exactly the
/// checkpoint this server starts from, and removes it in any case. From the shared
/// memory startup hook in the postmaster, before any other process exists.
fn load_at_start() {
    let Ok(mut file) = File::open(DUMP) else { return };
    let started = Instant::now();
    let mut header = [0u8; HEADER];
    let written_at = file.read_exact(&mut header).ok().and_then(|_| ShutdownPoint::read(&header));
    drop(file);
    let starting_at = shutdown_point();
    // A standby, a point-in-time recovery or a restored backup starts from this
    // checkpoint too, and then replays WAL written after it.
    let replays = ["standby.signal", "recovery.signal", "backup_label"].iter().find(|f| std::path::Path::new(f).exists());
    let why_not = if !gucs::warm_restart() {
        Some("pg_cache.warm_restart is off".to_string())
    } else if written_at.is_none() {
        Some("it is not a dump of this version".to_string())
    } else if starting_at != written_at {
        Some("the server does not start from the clean shutdown it was written at".to_string())
    } else {
        replays.map(|f| format!("{f} is present: the server replays WAL written after it"))
    };
    let outcome = match why_not {
        Some(why) => Err(io::Error::other(why)),
        None => std::panic::catch_unwind(|| {
            let open = || -> io::Result<File> {
                let mut f = File::open(DUMP)?;
                f.read_exact(&mut [0u8; HEADER])?;
                Ok(f)
            };
            shmem::store().load(open, pg::now(), registry::size_limit)
        })
        .unwrap_or_else(|_| Err(io::Error::other("a panic"))),
    };
    if let Err(e) = std::fs::remove_file(DUMP) {
        log!("pg_cache: could not remove {DUMP}: {e}");
    }
    match outcome {
        Ok(c) => log!(
            "pg_cache: loaded {} entries of {} caches ({} MB) from the dump of the last clean shutdown in {} ms",
            c.entries,
            c.caches,
            c.bytes >> 20,
            started.elapsed().as_millis()
        ),
        Err(e) => log!("pg_cache: the dump of the last shutdown is not loaded: {e}"),
    }
}
