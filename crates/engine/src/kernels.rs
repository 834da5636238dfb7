//! The engine's own quantized matmul kernels, as far as callers outside
//! the engine need them: which instruction set they run with on this CPU
//! (benchmark reports name it), and a direct entry point for kernel
//! benchmarks (`examples/qmatmul_speed.rs`), and the interleaved Q4_K layout
//! ([`x8`]).

pub use crate::decoder::qkernels::x8;
pub use crate::decoder::qkernels::{candle_isa_env, detected_isa, isa, matmul, Isa, Kind, ISA_ENV};
