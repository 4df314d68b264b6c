//! Kernel-side de-duplication: a path sent once is not sent again while it is remembered, so
//! hot loops cost a hash and a lookup instead of an event.
//!
//! Two levels: a per-CPU direct-mapped cache of recent keys (an array lookup the verifier
//! inlines), then a global LRU map.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::bpf_loop,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use slim_common::{PATH_CAP, PathEvent, stat, status};

use crate::count;

const RECENT_SLOTS: u32 = 4096;
/// Per-CPU LRU lists: no lock shared between CPUs.
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
const O_DIRECTORY: u32 = 0o200000;
const O_PATH: u32 = 0o10_000_000;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Keys of paths sent recently.
#[map]
static SEEN: LruHashMap<u64, u8> = LruHashMap::with_max_entries(65536, BPF_F_NO_COMMON_LRU);

/// The most recent key per slot, per CPU.
#[map]
static RECENT: PerCpuArray<u64> = PerCpuArray::with_max_entries(RECENT_SLOTS, 0);

#[inline(always)]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(FNV_PRIME)
}

/// splitmix64's finaliser, so that the low bits (the cache slot) depend on every input bit.
#[inline(always)]
fn finish(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// State of a hash over the words of a byte array, shared with its `bpf_loop` callback.
#[repr(C)]
struct HashState {
    words: *const u64,
    len: u64,
    hash: u64,
}

#[inline(always)]
extern "C" fn hash_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the HashState given to it.
    let st = unsafe { &mut *(ctx as *mut HashState) };
    let start = index * 8;
    if start >= st.len {
        return 1;
    }
    // SAFETY: `words` points at an 8-aligned array of the event of PATH_CAP or more bytes;
    // the mask keeps the word inside it.
    let mut word = unsafe { *st.words.add(index as usize & (PATH_CAP / 8 - 1)) };
    let rest = st.len - start;
    if rest < 8 {
        // Bytes past the end are left over from earlier events.
        word &= (1u64 << (rest * 8)) - 1;
    }
    st.hash = mix(st.hash, word);
    0
}

/// Words hashed inline before the loop takes over: most paths are shorter.
const INLINE_WORDS: u64 = 6;

/// Hash of `len` bytes at the 8-aligned `bytes` of an event.
#[inline(always)]
pub fn hash_bytes(seed: u64, bytes: *const u8, len: usize) -> u64 {
    let mut st = HashState {
        words: bytes.cast(),
        len: len as u64,
        hash: seed,
    };
    for index in 0..INLINE_WORDS {
        if hash_step(index, (&mut st as *mut HashState).cast()) != 0 {
            return st.hash;
        }
    }
    // SAFETY: the callback only reads the bytes it is given.
    unsafe {
        bpf_loop(
            (PATH_CAP / 8) as u32 - INLINE_WORDS as u32,
            hash_rest as *mut c_void,
            (&mut st as *mut HashState).cast(),
            0,
        )
    };
    st.hash
}

/// `hash_step` for the words after the inline ones.
#[inline(never)]
extern "C" fn hash_rest(index: u64, ctx: *mut c_void) -> i64 {
    hash_step(index + INLINE_WORDS, ctx)
}

/// The de-duplication key of an event: its process group, base directory, operation, the
/// flags that change its meaning, and its path.
#[inline(always)]
pub fn key(ev: &PathEvent, dir: (u64, u64)) -> u64 {
    let flags = ev.flags & (O_DIRECTORY | O_PATH);
    let what =
        u64::from(ev.op) | u64::from(ev.status & status::NOFOLLOW) << 8 | u64::from(flags) << 16;
    let mut h = mix(mix(mix(mix(FNV_OFFSET, ev.cgroup_id), dir.0), dir.1), what);
    h = hash_bytes(h, ev.path.as_ptr(), usize::from(ev.path_len));
    finish(h)
}

/// True when the key was sent recently; otherwise remembers it.
#[inline(always)]
pub fn seen_before(key: u64) -> bool {
    let Some(slot) = RECENT.get_ptr_mut(key as u32 & (RECENT_SLOTS - 1)) else {
        return false;
    };
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    let slot = unsafe { &mut *slot };
    if *slot == key {
        count(stat::DEDUPED);
        return true;
    }
    *slot = key;
    // SAFETY: the value is only tested for presence.
    if unsafe { SEEN.get(&key) }.is_some() {
        count(stat::DEDUPED);
        return true;
    }
    let _ = SEEN.insert(&key, &1, 0);
    false
}

/// Forgets a key whose event could not be delivered, so the next occurrence is sent.
#[inline(always)]
pub fn forget(key: u64) {
    let _ = SEEN.remove(&key);
    if let Some(slot) = RECENT.get_ptr_mut(key as u32 & (RECENT_SLOTS - 1)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot = 0 };
    }
}
