//! Eight `f32` lanes, the vector unit of CPU attention.
//!
//! On x86-64 builds with AVX2 and FMA enabled at compile time (the
//! workspace's x86-64-v3 baseline) a lane array is one 256-bit register;
//! elsewhere (aarch64, other x86 targets) it is a plain array the compiler
//! may vectorize. Both give the same bits: every operation is per lane
//! (fused multiply-add, IEEE add, multiply, max, floor) and the horizontal
//! sum adds the lanes in one fixed order.

// The x86 path calls AVX2/FMA intrinsics, only compiled where those
// features are enabled at compile time; its loads and stores take raw
// pointers into arrays of exactly eight values.
#![allow(unsafe_code)]

/// Values per lane array.
pub(crate) const LANES: usize = 8;

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
mod avx2 {
    use std::arch::x86_64::*;

    /// Eight lanes in one AVX register.
    #[derive(Clone, Copy)]
    pub(crate) struct F8(__m256);

    impl F8 {
        /// All lanes zero.
        #[inline(always)]
        pub(crate) fn zero() -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe { _mm256_setzero_ps() })
        }
        /// All lanes `x`.
        #[inline(always)]
        pub(crate) fn splat(x: f32) -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe { _mm256_set1_ps(x) })
        }
        /// The eight values of `a`.
        #[inline(always)]
        pub(crate) fn load(a: &[f32; 8]) -> F8 {
            // SAFETY: `a` holds exactly the eight values read.
            F8(unsafe { _mm256_loadu_ps(a.as_ptr()) })
        }
        /// Writes the lanes to `a`.
        #[inline(always)]
        pub(crate) fn store(self, a: &mut [f32; 8]) {
            // SAFETY: `a` has room for exactly the eight values written.
            unsafe { _mm256_storeu_ps(a.as_mut_ptr(), self.0) }
        }
        /// `self * b + c`, rounded once.
        #[inline(always)]
        pub(crate) fn mul_add(self, b: F8, c: F8) -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        /// `self + b`.
        #[inline(always)]
        pub(crate) fn add(self, b: F8) -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        /// `self * b`.
        #[inline(always)]
        pub(crate) fn mul(self, b: F8) -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe { _mm256_mul_ps(self.0, b.0) })
        }
        /// Lane-wise maximum.
        #[inline(always)]
        pub(crate) fn max(self, b: F8) -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe { _mm256_max_ps(self.0, b.0) })
        }
        /// Lane-wise minimum.
        #[inline(always)]
        pub(crate) fn min(self, b: F8) -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe { _mm256_min_ps(self.0, b.0) })
        }
        /// Lane-wise floor.
        #[inline(always)]
        pub(crate) fn floor(self) -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe { _mm256_floor_ps(self.0) })
        }
        /// `2^n` for lanes holding whole numbers `n` in `[-126, 127]`.
        #[inline(always)]
        pub(crate) fn exp2_int(self) -> F8 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            F8(unsafe {
                let n = _mm256_cvtps_epi32(self.0);
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n, _mm256_set1_epi32(127))))
            })
        }
        /// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
        #[inline(always)]
        pub(crate) fn sum(self) -> f32 {
            // SAFETY: AVX2 and FMA are enabled at compile time (this module's cfg).
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
            }
        }
        /// The largest lane.
        #[inline(always)]
        pub(crate) fn max_lane(self) -> f32 {
            let mut a = [0f32; 8];
            self.store(&mut a);
            a.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
        }
    }
}

// The portable lanes; on x86-64 with AVX2 they are compiled for the test
// that checks both paths agree bit for bit.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))))]
#[cfg_attr(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"), allow(dead_code))]
mod portable {
    /// Eight lanes in a plain array.
    #[derive(Clone, Copy)]
    pub(crate) struct F8([f32; 8]);

    impl F8 {
        #[inline(always)]
        fn map2(self, b: F8, f: impl Fn(f32, f32) -> f32) -> F8 {
            F8(std::array::from_fn(|i| f(self.0[i], b.0[i])))
        }
        /// All lanes zero.
        #[inline(always)]
        pub(crate) fn zero() -> F8 {
            F8([0.0; 8])
        }
        /// All lanes `x`.
        #[inline(always)]
        pub(crate) fn splat(x: f32) -> F8 {
            F8([x; 8])
        }
        /// The eight values of `a`.
        #[inline(always)]
        pub(crate) fn load(a: &[f32; 8]) -> F8 {
            F8(*a)
        }
        /// Writes the lanes to `a`.
        #[inline(always)]
        pub(crate) fn store(self, a: &mut [f32; 8]) {
            *a = self.0;
        }
        /// `self * b + c`, rounded once.
        #[inline(always)]
        pub(crate) fn mul_add(self, b: F8, c: F8) -> F8 {
            F8(std::array::from_fn(|i| self.0[i].mul_add(b.0[i], c.0[i])))
        }
        /// `self + b`.
        #[inline(always)]
        pub(crate) fn add(self, b: F8) -> F8 {
            self.map2(b, |x, y| x + y)
        }
        /// `self * b`.
        #[inline(always)]
        pub(crate) fn mul(self, b: F8) -> F8 {
            self.map2(b, |x, y| x * y)
        }
        /// Lane-wise maximum.
        #[inline(always)]
        pub(crate) fn max(self, b: F8) -> F8 {
            self.map2(b, |x, y| if x > y { x } else { y })
        }
        /// Lane-wise minimum.
        #[inline(always)]
        pub(crate) fn min(self, b: F8) -> F8 {
            self.map2(b, |x, y| if x < y { x } else { y })
        }
        /// Lane-wise floor.
        #[inline(always)]
        pub(crate) fn floor(self) -> F8 {
            F8(self.0.map(f32::floor))
        }
        /// `2^n` for lanes holding whole numbers `n` in `[-126, 127]`.
        #[inline(always)]
        pub(crate) fn exp2_int(self) -> F8 {
            F8(self.0.map(|n| f32::from_bits((((n as i32) + 127) as u32) << 23)))
        }
        /// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
        #[inline(always)]
        pub(crate) fn sum(self) -> f32 {
            let a = self.0;
            ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
        }
        /// The largest lane.
        #[inline(always)]
        pub(crate) fn max_lane(self) -> f32 {
            self.0.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
pub(crate) use avx2::F8;
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
pub(crate) use portable::F8;

/// `e^x` lane by lane for `x` in about `[-87, 88]` (smaller inputs give
/// about `1e-38`, not 0), relative error below `2e-7`: Cody-Waite range
/// reduction to `x = n ln 2 + r`, `|r| <= ln 2 / 2`, a degree-6 polynomial
/// for `e^r` (Cephes' `expf` coefficients) and `2^n` written into the
/// exponent bits.
#[inline(always)]
pub(crate) fn exp(x: F8) -> F8 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
    let x = x.max(F8::splat(-87.0)).min(F8::splat(88.0));
    let n = x.mul_add(F8::splat(LOG2E), F8::splat(0.5)).floor();
    let r = n.mul_add(F8::splat(-LN2_HI), x);
    let r = n.mul_add(F8::splat(-LN2_LO), r);
    let mut p = F8::splat(P[0]);
    for c in &P[1..] {
        p = p.mul_add(r, F8::splat(*c));
    }
    let y = p.mul_add(r.mul(r), r).add(F8::splat(1.0));
    y.mul(n.exp2_int())
}

/// [`exp`] of one value, with the same bits as a lane of it.
#[inline(always)]
pub(crate) fn exp1(x: f32) -> f32 {
    let mut a = [x; 8];
    exp(F8::splat(x)).store(&mut a);
    a[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_2e_7_of_the_exact_value_relatively_over_the_softmax_range() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 87.0 * i as f32 / 200_000.0;
            let got = exp1(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp1(0.0), 1.0);
        assert!(exp1(-1000.0) < 1e-37 && exp1(-1000.0) >= 0.0);
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    #[test]
    fn the_avx2_lanes_give_the_bits_of_the_portable_ones() {
        use super::portable::F8 as P;
        /// Pseudo-random lanes spread over many magnitudes and both signs.
        fn lanes(seed: u32) -> [f32; 8] {
            let mut x = seed.wrapping_mul(2_654_435_761).max(1);
            std::array::from_fn(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                ((x % 2001) as f32 - 1000.0) / 7.0 * if x & 1 == 0 { 1.0 } else { 1e-3 }
            })
        }
        let bits = |f: F8| {
            let mut a = [0f32; 8];
            f.store(&mut a);
            a.map(f32::to_bits)
        };
        let pbits = |f: P| {
            let mut a = [0f32; 8];
            f.store(&mut a);
            a.map(f32::to_bits)
        };
        for seed in 1..200 {
            let (a, b, c) = (lanes(seed), lanes(seed + 1000), lanes(seed + 2000));
            let (x, y, z) = (F8::load(&a), F8::load(&b), F8::load(&c));
            let (px, py, pz) = (P::load(&a), P::load(&b), P::load(&c));
            assert_eq!(bits(x.mul_add(y, z)), pbits(px.mul_add(py, pz)));
            assert_eq!(bits(x.add(y)), pbits(px.add(py)));
            assert_eq!(bits(x.mul(y)), pbits(px.mul(py)));
            assert_eq!(bits(x.max(y)), pbits(px.max(py)));
            assert_eq!(bits(x.min(y)), pbits(px.min(py)));
            assert_eq!(bits(x.floor()), pbits(px.floor()));
            assert_eq!(x.sum().to_bits(), px.sum().to_bits());
            assert_eq!(x.max_lane().to_bits(), px.max_lane().to_bits());
            let n = x.mul(F8::splat(0.1)).floor().max(F8::splat(-126.0)).min(F8::splat(127.0));
            let pn = px.mul(P::splat(0.1)).floor().max(P::splat(-126.0)).min(P::splat(127.0));
            assert_eq!(bits(n.exp2_int()), pbits(pn.exp2_int()));
        }
    }

    #[test]
    fn the_lane_sum_adds_in_the_documented_order() {
        let v = [1e8f32, 1.0, -1e8, 1.0, 3.0, 0.5, 0.25, 0.125];
        let want = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
        assert_eq!(F8::load(&v).sum().to_bits(), want.to_bits());
        assert_eq!(F8::load(&v).max_lane(), 1e8);
    }
}
