//! The engine's integration tests, one binary (each links candle): parity
//! with llama.cpp and sentence-transformers, constrained decoding, the
//! prefix cache, batching and the shared model, all on the real models.

mod bench;
mod constrained;
mod engine;
mod prefix_batch;
