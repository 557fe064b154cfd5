//! Python `str` objects for environ keys and values without building each one anew.
//!
//! Creating a `str` through the C API (allocate, decode, later free) is the largest single cost
//! of an environ dict, so the bridge reuses objects where it safely can:
//!
//! - The keys: those of the CGI variables and of the header names [`crate::names`] knows are
//!   interned once per application (`PyApplication`'s constants, by id). Keys of other headers
//!   are made per request and not interned: a client choosing header names must not grow the
//!   interpreter's interned-string table (immortal since CPython 3.12).
//! - [`value`]: a small per-thread cache of recent values. Header values repeat from request to
//!   request (the same browsers send the same `Accept`, `User-Agent`, `Host`…), and a `str` is
//!   immutable, so handing the same object to several requests is invisible to applications.
//!   Secrets (`Cookie`, `Authorization`) are never kept.

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::types::PyString;

/// Mixes a string's length and its first and last (up to) eight bytes into a table slot: O(1)
/// whatever the length; a full comparison confirms every hit.
fn slot(s: &[u8], bits: u32) -> usize {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        let n = b.len().min(8);
        w[..n].copy_from_slice(&b[..n]);
        u64::from_le_bytes(w)
    };
    let head = word(s);
    let tail = word(&s[s.len().saturating_sub(8)..]);
    let h = (head ^ (s.len() as u64)).wrapping_mul(K1).rotate_left(31) ^ tail;
    (h.wrapping_mul(K2) >> (64 - bits)) as usize
}

/// Whether the cached `s` holds exactly `text`.
pub(crate) fn holds(s: &Bound<'_, PyString>, text: &str) -> bool {
    s.to_str().is_ok_and(|t| t == text)
}

/// A direct-mapped cache of recent environ values, one per app thread.
struct ValueCache {
    slots: Vec<Option<Py<PyString>>>,
}

impl ValueCache {
    const BITS: u32 = 9;
    /// Longer values are rarely repeated byte for byte and would pin memory.
    const MAX_LEN: usize = 256;
}

thread_local! {
    static VALUES: RefCell<ValueCache> = const { RefCell::new(ValueCache { slots: Vec::new() }) };
}

/// Returns a `str` holding `text`: a cached object if this thread made one recently, else a new
/// one (then cached, unless `secret`, long or not ASCII).
pub(crate) fn value<'py>(py: Python<'py>, text: &str, secret: bool) -> Bound<'py, PyString> {
    if secret || text.len() > ValueCache::MAX_LEN || text.len() < 2 || !text.is_ascii() {
        // "" and one-character strings are CPython singletons already.
        return PyString::new(py, text);
    }
    let cached = VALUES.try_with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else { return None };
        if cache.slots.is_empty() {
            cache.slots = (0..1 << ValueCache::BITS).map(|_| None).collect();
        }
        let entry = &mut cache.slots[slot(text.as_bytes(), ValueCache::BITS)];
        if let Some(s) = entry {
            let s = s.bind(py);
            if holds(s, text) {
                return Some(s.clone());
            }
        }
        let s = PyString::new(py, text);
        // Replacing an entry drops its reference; freeing a str runs no Python code.
        *entry = Some(s.clone().unbind());
        Some(s)
    });
    cached.ok().flatten().unwrap_or_else(|| PyString::new(py, text))
}
