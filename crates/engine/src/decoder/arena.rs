//! Memory for repacked weights, in 2 MiB pages where the kernel gives them.
//!
//! Decoding reads every weight once per token: on a 1.5B model that is a
//! gigabyte streamed through the TLB, 262,144 pages of 4 KiB. With
//! transparent huge pages on request (`madvise`, the default of most
//! distributions) a plain `Vec` gets small pages, and the page walks cost
//! about a quarter of the interleaved Q4_K kernel's time (its AVX2 code,
//! `PERSONA_SIMD=avx2`, on two cores of an AMD EPYC with AVX-512 VNNI:
//! 1.47 against 1.08 ms for 63 MB, `examples/qmatmul_speed.rs`). So the
//! matrices that are copied at load ([`super::qkernels::x8`]) go into
//! anonymous regions advised `MADV_HUGEPAGE`, packed one after the other
//! so that small matrices share huge pages too. Where huge pages are off or
//! unavailable the advice does nothing and the regions are ordinary memory.
//!
//! A region is written only once per slice, before the slice is handed out:
//! [`Arena::fill`] reserves bytes no other slice covers, lets the caller
//! write them, and only then returns the [`ArenaBytes`] that reads them.
//! Untouched bytes at the end of a region are address space only, not
//! resident memory.

// The regions are shared (`Arc`) while later slices of them are still being
// written; each slice is reached through its own raw pointer range.
#![allow(unsafe_code)]

use std::ops::Range;
use std::sync::{Arc, Mutex};

use memmap2::MmapMut;

/// Whether this system hands out transparent huge pages to memory that
/// asks for them (Linux with THP `always` or `madvise`); elsewhere a copy
/// into an arena buys nothing over the mapped file.
pub(crate) fn huge_pages_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        cfg!(target_os = "linux")
            && std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").is_ok_and(|s| s.contains("[always]") || s.contains("[madvise]"))
    })
}

/// Huge page size on x86-64 and most aarch64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// Default region size: a few layers of a small model per region.
const REGION_BYTES: usize = 64 << 20;

/// One anonymous mapping, its usable part aligned to [`HUGE_PAGE`].
struct Region {
    /// Owns the mapping; never read or written through after creation
    /// (all access goes through `base`).
    _map: MmapMut,
    /// Start of the aligned part.
    base: *mut u8,
    /// Bytes from `base` to the end of the mapping.
    len: usize,
}

// SAFETY: `Region` is a block of memory; its slices are written only
// before they are shared (module documentation) and read-only afterwards.
unsafe impl Send for Region {}
// SAFETY: as above: shared references only ever read finished slices.
unsafe impl Sync for Region {}

impl Region {
    /// A region with at least `len` usable bytes starting on a huge page.
    fn new(len: usize) -> std::io::Result<Self> {
        let mut map = memmap2::MmapOptions::new().len(len + HUGE_PAGE).map_anon()?;
        #[cfg(target_os = "linux")]
        {
            // Best effort: without transparent huge pages it is refused or
            // ignored, and the region has small pages.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        let start = map.as_mut_ptr();
        let skip = start.align_offset(HUGE_PAGE).min(HUGE_PAGE);
        // SAFETY: `skip <= HUGE_PAGE`, inside the mapping of `len +
        // HUGE_PAGE` bytes.
        let base = unsafe { start.add(skip) };
        Ok(Region { base, len: len + HUGE_PAGE - skip, _map: map })
    }
}

/// Bytes of one matrix in an [`Arena`] region.
#[derive(Clone)]
pub(crate) struct ArenaBytes {
    region: Arc<Region>,
    range: Range<usize>,
}

impl ArenaBytes {
    /// The bytes, as written by [`Arena::fill`].
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `range` lies inside the region (checked when it was
        // reserved), was fully written before this value existed, and no
        // one writes it again; the region lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.region.base.add(self.range.start), self.range.len()) }
    }
}

/// Regions that repacked matrices are packed into, one after the other.
#[derive(Default)]
pub(crate) struct Arena {
    /// The region being filled and how many of its bytes are taken.
    current: Mutex<Option<(Arc<Region>, usize)>>,
}

impl Arena {
    /// Reserves `len` bytes, lets `write` fill them (all of them: they
    /// start as zeros), and returns them as shared bytes; `Ok(None)` when
    /// `write` says it could not (the bytes are left unused).
    pub(crate) fn fill(&self, len: usize, write: impl FnOnce(&mut [u8]) -> bool) -> std::io::Result<Option<ArenaBytes>> {
        let (region, start) = self.reserve(len)?;
        // SAFETY: `start..start + len` lies inside the region and no other
        // reservation overlaps it (`reserve` hands out each byte once);
        // no `ArenaBytes` of it exists yet, so this is the only reference.
        let dst = unsafe { std::slice::from_raw_parts_mut(region.base.add(start), len) };
        if !write(dst) {
            return Ok(None);
        }
        Ok(Some(ArenaBytes { region, range: start..start + len }))
    }

    /// A fresh range of `len` bytes: in the current region when it has
    /// room, otherwise in a new one (of [`REGION_BYTES`], or just this
    /// matrix when it is larger).
    fn reserve(&self, len: usize) -> std::io::Result<(Arc<Region>, usize)> {
        let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((region, used)) = current.as_mut() {
            if region.len - *used >= len {
                let start = *used;
                // The next matrix starts on a cache line.
                *used = (start + len).next_multiple_of(64).min(region.len);
                return Ok((region.clone(), start));
            }
        }
        let region = Arc::new(Region::new(len.max(REGION_BYTES))?);
        *current = Some((region.clone(), len.next_multiple_of(64).min(region.len)));
        Ok((region, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_keep_their_bytes_across_regions() {
        let arena = Arena::default();
        let sizes = [1000, REGION_BYTES / 2, 3 * REGION_BYTES / 4, 3 * REGION_BYTES / 2, 77];
        let slices: Vec<ArenaBytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                arena
                    .fill(len, |dst| {
                        assert!(dst.iter().all(|&b| b == 0), "fresh bytes are zeros");
                        dst.iter_mut().enumerate().for_each(|(j, b)| *b = (i * 31 + j * 7) as u8);
                        true
                    })
                    .unwrap()
                    .unwrap()
            })
            .collect();
        for (i, s) in slices.iter().enumerate() {
            assert_eq!(s.bytes().len(), sizes[i]);
            assert!(s.bytes().iter().enumerate().all(|(j, &b)| b == (i * 31 + j * 7) as u8), "slice {i} intact");
        }
        // The first two share a region; the third does not fit after them; the
        // largest gets its own.
        assert!(Arc::ptr_eq(&slices[0].region, &slices[1].region));
        assert!(!Arc::ptr_eq(&slices[1].region, &slices[2].region));
        assert!(!Arc::ptr_eq(&slices[2].region, &slices[3].region));
        assert_eq!(slices[1].range.start % 64, 0, "matrices start on a cache line");
        assert_eq!(slices[0].region.base as usize % HUGE_PAGE, 0, "regions start on a huge page");
    }

    #[test]
    fn a_refused_write_hands_out_nothing() {
        let arena = Arena::default();
        assert!(arena.fill(128, |_| false).unwrap().is_none());
        let s = arena.fill(16, |dst| {
            dst.fill(9);
            true
        });
        assert_eq!(s.unwrap().unwrap().bytes(), &[9u8; 16]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn regions_are_advised_for_huge_pages() {
        let arena = Arena::default();
        let s = arena.fill(4 * HUGE_PAGE, |dst| {
            dst.fill(1);
            true
        });
        let at = s.unwrap().unwrap().bytes().as_ptr() as usize;
        // /proc/self/smaps: a header line `start-end perms ...` per mapping,
        // then its fields, `VmFlags:` among them (`hg`: huge page advised).
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut flags = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ').filter(|(r, _)| r.contains('-') && !r.ends_with(':')) {
                let (lo, hi) = range.split_once('-').unwrap();
                let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap_or(0), usize::from_str_radix(hi, 16).unwrap_or(0));
                inside = (lo..hi).contains(&at);
            } else if inside && line.starts_with("VmFlags:") {
                flags = Some(line.to_string());
            }
        }
        let flags = flags.expect("the region's mapping is in /proc/self/smaps");
        assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
    }
}
