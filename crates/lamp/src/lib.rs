//! # persona-lamp
//!
//! The LaMP benchmark harness of PersonaAgent (work in progress): the four
//! tasks the paper evaluates and their label sets ([`task`]), the official
//! file format ([`format`]), reading model outputs as task outputs
//! ([`parse`]), and the official metrics with bootstrap confidence
//! intervals over users ([`metrics`]).

pub mod analysis;
pub mod build;
pub mod error;
pub mod format;
pub mod methods;
pub mod metrics;
pub mod parse;
pub mod report;
pub mod runner;
pub mod task;

pub use build::{build, BuildOptions, Built, Manifest};
pub use error::{LampError, Result};
pub use format::{read_examples, read_outputs, read_questions, write_examples, Example, Gold, Outputs, Question};
pub use methods::{Method, MethodConfig, Resources};
pub use metrics::{bootstrap, classification, rating, Classification, Interval, Rating};
pub use parse::{parse_output, Parsed, Reading};
pub use report::{markdown, score_all, MethodScores};
pub use runner::{read_results, run, ResultRow, RunEvent};
pub use task::Task;
