//! One module per subcommand.

pub mod agent;
pub mod align;
pub mod ask;
pub mod bench;
pub mod bench_compare;
pub mod bench_lamp;
pub mod bench_memory;
pub mod bench_merge;
pub mod bench_personas;
pub mod bench_reuse;
pub mod chat;
pub mod data;
pub mod embed;
pub mod generate;
pub mod memory;
pub mod models;
pub mod persona;
pub mod report;
pub mod serve;
pub mod user;
