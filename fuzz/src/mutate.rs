//! Byte mutation, in the manner of AFL's "havoc" stage: a few random edits stacked
//! on an input from the corpus, sometimes spliced with another. Because targets read
//! their bytes through structure-aware generators, most edits change the structure
//! they build (another variant, a longer list, a field left out) rather than only the
//! bytes of a string.

use fastrand::Rng;

/// Bytes that mean something to JSON, MessagePack or the generators' choices.
const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0xc2, 0xc3, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0x90, 0x9f, 0x80, 0x8f,
    b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b'0', b'9', b'e', b'-', b'.', b'*', b' ',
];

/// Snippets worth inserting whole: JSON tokens, numbers at the edges of their types,
/// escapes that are hard to get right.
const TOKENS: &[&[u8]] = &[
    b"\"type\"",
    b"\"body\"",
    b"\"room\"",
    b"null",
    b"true",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.1",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"[[[[[[[[[[[[[[[[",
    b"{}",
    b"[]",
    b"\xf0\x9f\x98\x80",
    b"\xed\xa0\x80",
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff",
    b"\xc4\xff",
];

/// A fresh input of random bytes, short more often than long.
pub fn fresh(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let len = small(rng, max_len);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// A length up to `max`, where every power of two is as likely as the next.
fn small(rng: &mut Rng, max: usize) -> usize {
    let bits = usize::BITS - max.max(1).leading_zeros();
    let cap = (1usize << rng.u32(0..=bits)).min(max);
    rng.usize(0..=cap)
}

/// Applies one to eight random edits to `data`, keeping it within `max_len`; `other`
/// is another corpus entry to splice from.
pub fn havoc(rng: &mut Rng, data: &mut Vec<u8>, max_len: usize, other: &[u8]) {
    for _ in 0..(1 << rng.u32(0..4)) {
        edit(rng, data, other);
    }
    data.truncate(max_len);
}

fn edit(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.u8(0..12) {
        0 | 1 if len > 0 => {
            let at = rng.usize(..len);
            data[at] ^= 1 << rng.u8(0..8);
        }
        2 if len > 0 => {
            let at = rng.usize(..len);
            data[at] = rng.u8(..);
        }
        3 if len > 0 => {
            let at = rng.usize(..len);
            data[at] = INTERESTING_BYTES[rng.usize(..INTERESTING_BYTES.len())];
        }
        4 => {
            let at = rng.usize(..=len);
            let bytes: Vec<u8> = (0..small(rng, 16).max(1)).map(|_| rng.u8(..)).collect();
            data.splice(at..at, bytes);
        }
        5 if len > 0 => {
            let start = rng.usize(..len);
            let end = (start + small(rng, len - start).max(1)).min(len);
            data.drain(start..end);
        }
        6 if len > 0 => {
            let start = rng.usize(..len);
            let end = (start + small(rng, len - start).max(1)).min(len);
            let copy = data[start..end].to_vec();
            let at = rng.usize(..=len);
            data.splice(at..at, copy);
        }
        7 if len > 0 => {
            // A number at the edge of its width, little-endian, where the generators
            // read integers.
            let value: u64 = match rng.u8(0..6) {
                0 => 0,
                1 => u64::MAX,
                2 => u64::from(u32::MAX),
                3 => 1 << 63,
                4 => 1 << 31,
                _ => rng.u64(0..256),
            };
            let width = 1 << rng.u32(0..4);
            let at = rng.usize(..len);
            for (i, byte) in value.to_le_bytes().iter().take(width).enumerate() {
                if let Some(slot) = data.get_mut(at + i) {
                    *slot = *byte;
                }
            }
        }
        8 => {
            let at = rng.usize(..=len);
            let token = TOKENS[rng.usize(..TOKENS.len())];
            data.splice(at..at, token.iter().copied());
        }
        9 if !other.is_empty() => {
            // Splice: a piece of another input in place of the tail.
            let at = rng.usize(..=len);
            let from = rng.usize(..other.len());
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        10 if len > 1 => {
            let at = rng.usize(1..len);
            data.truncate(at);
        }
        _ => {
            let at = rng.usize(..=len);
            data.insert(at, INTERESTING_BYTES[rng.usize(..INTERESTING_BYTES.len())]);
        }
    }
}
