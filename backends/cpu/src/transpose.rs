//! Copies between strided views of 8-byte elements where one is the other's transpose in
//! memory (a row-major block into a column-major buffer and back), by 8x8 squares
//! transposed in AVX-512 registers.
//!
//! An element-by-element copy with strides known only at run time stays scalar: one load
//! and one store per element, the stores of a square going to eight lines. Here a square is
//! eight 64-byte loads, three rounds of two-source permutes and eight 64-byte stores, and a
//! 16 MiB panel (4096x512 `f64`) goes from row-major to column-major several times faster
//! (see `MatMut::copy_from`'s docs for the figures).

use std::arch::x86_64::*;

/// `dst[i * dld + j] = src[j * sld + i]` for `i < m`, `j < n`: an `m x n` row-major view
/// (leading dimension `dld`) filled from the transpose of an `n x m` row-major one.
///
/// # Safety
/// AVX-512F must be available; `src` must reach `n x m` elements with leading dimension
/// `sld`, `dst` `m x n` with `dld`, and the two must not overlap.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_u64(
    dst: *mut u64,
    dld: usize,
    src: *const u64,
    sld: usize,
    m: usize,
    n: usize,
) {
    // Squares in tiles of TILE x TILE elements, so that the lines of both sides a tile
    // touches (TILE of each, TILE * 8 bytes long) stay in L1 while it is copied.
    const TILE: usize = 64;
    let (m8, n8) = (m / 8 * 8, n / 8 * 8);
    for ii in (0..m8).step_by(TILE) {
        for jj in (0..n8).step_by(TILE) {
            for i0 in (ii..(ii + TILE).min(m8)).step_by(8) {
                for j0 in (jj..(jj + TILE).min(n8)).step_by(8) {
                    // SAFETY: the square (i0.., j0..) of 8x8 lies inside both views.
                    unsafe { square(dst.add(i0 * dld + j0), dld, src.add(j0 * sld + i0), sld) };
                }
            }
        }
    }
    // The edges, element by element.
    for i in 0..m {
        let js = if i < m8 { n8..n } else { 0..n };
        for j in js {
            // SAFETY: (i, j) is inside both views.
            unsafe { *dst.add(i * dld + j) = *src.add(j * sld + i) };
        }
    }
}

/// One 8x8 square: eight rows of `src` (`sld` apart) become eight rows of `dst`.
///
/// # Safety
/// As [`transpose_u64`], for the square.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn square(dst: *mut u64, dld: usize, src: *const u64, sld: usize) {
    // SAFETY: each pointer is a row of eight elements inside its view; unaligned loads and
    // stores take any address.
    unsafe {
        let load = |k: usize| _mm512_loadu_si512(src.add(k * sld).cast());
        let r = [
            load(0),
            load(1),
            load(2),
            load(3),
            load(4),
            load(5),
            load(6),
            load(7),
        ];
        // Round 1: pairs of rows interleaved, element by element.
        let t = [
            _mm512_unpacklo_epi64(r[0], r[1]), // r0_0 r1_0 r0_2 r1_2 r0_4 r1_4 r0_6 r1_6
            _mm512_unpackhi_epi64(r[0], r[1]), // r0_1 r1_1 r0_3 r1_3 ...
            _mm512_unpacklo_epi64(r[2], r[3]),
            _mm512_unpackhi_epi64(r[2], r[3]),
            _mm512_unpacklo_epi64(r[4], r[5]),
            _mm512_unpackhi_epi64(r[4], r[5]),
            _mm512_unpacklo_epi64(r[6], r[7]),
            _mm512_unpackhi_epi64(r[6], r[7]),
        ];
        // Round 2: pairs of pairs, by 128-bit halves: columns c and c + 4 of four rows.
        let even = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
        let odd = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
        let u = [
            _mm512_permutex2var_epi64(t[0], even, t[2]), // col 0 of rows 0-3, col 4 of rows 0-3
            _mm512_permutex2var_epi64(t[1], even, t[3]), // cols 1, 5
            _mm512_permutex2var_epi64(t[0], odd, t[2]),  // cols 2, 6
            _mm512_permutex2var_epi64(t[1], odd, t[3]),  // cols 3, 7
            _mm512_permutex2var_epi64(t[4], even, t[6]), // the same for rows 4-7
            _mm512_permutex2var_epi64(t[5], even, t[7]),
            _mm512_permutex2var_epi64(t[4], odd, t[6]),
            _mm512_permutex2var_epi64(t[5], odd, t[7]),
        ];
        // Round 3: the low halves of rows 0-3 and 4-7 make columns 0-3, the high halves 4-7.
        for c in 0..4 {
            let lo = _mm512_shuffle_i64x2::<0b01_00_01_00>(u[c], u[c + 4]);
            let hi = _mm512_shuffle_i64x2::<0b11_10_11_10>(u[c], u[c + 4]);
            _mm512_storeu_si512(dst.add(c * dld).cast(), lo);
            _mm512_storeu_si512(dst.add((c + 4) * dld).cast(), hi);
        }
    }
}
