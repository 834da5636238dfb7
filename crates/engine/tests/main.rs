//! The engine's integration tests, one binary (each links candle): parity
//! with llama.cpp and sentence-transformers, constrained decoding, the
//! prefix cache, batching and the shared model, all on the real models;
//! and the GPU's code path (on the CPU always, on a GPU where one opens).

mod bench;
mod constrained;
mod device_path;
mod engine;
mod prefix_batch;
