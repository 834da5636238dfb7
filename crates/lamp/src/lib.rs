//! # persona-lamp
//!
//! The LaMP benchmark harness of PersonaAgent: the four tasks the paper
//! evaluates and their label sets ([`task`]), the official file format
//! ([`mod@format`]), builders that rebuild LaMP-style sets from raw data
//! ([`mod@build`]), the compared methods ([`methods`]), a resumable runner
//! ([`runner`]), reading model outputs as task outputs ([`parse`]), the
//! official metrics with bootstrap confidence intervals over users
//! ([`metrics`], [`report`]), each method's answers side by side
//! ([`answers`]), persona analysis ([`analysis`]) and plots
//! ([`plot`]).

pub mod analysis;
pub mod answers;
pub mod build;
pub mod error;
pub mod format;
pub mod merge;
pub mod methods;
pub mod metrics;
pub mod nearest;
pub mod oppu;
pub mod parse;
pub mod plot;
pub mod replay;
pub mod report;
pub mod runner;
pub mod shard;
pub mod task;

pub use answers::answers_markdown;
pub use build::{build, BuildOptions, Built, Manifest};
pub use error::{LampError, Result};
pub use format::{first_users, read_examples, read_outputs, read_questions, user_ordinals, write_examples, Example, Gold, Outputs, Question};
pub use merge::{merge, Part, Report};
pub use methods::{Method, MethodConfig, Resources};
pub use metrics::{bootstrap, classification, rating, Classification, Interval, Rating};
pub use oppu::read_oppu;
pub use parse::{parse_output, Parsed, Reading};
pub use report::{markdown, scaling_markdown, score_all, MethodScores};
pub use runner::{pin_settings, read_alignments, read_results, run, settings_path, AlignmentRow, ResultRow, RunEvent};
pub use task::Task;
