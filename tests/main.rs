//! End-to-end tests of the `persona` binary, one test binary: the model
//! commands, users and memory, the agent commands and benchmarks, and the
//! server as a process.

mod agent_cli;
mod cli;
mod memory_cli;
mod serve_cli;
