//! The benchmark crate's integration tests, one binary: the set builders
//! on the real raw data and the runner with the real tiny model.

mod rebuild;
mod runner;
