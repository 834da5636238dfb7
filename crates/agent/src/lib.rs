//! # persona-agent
//!
//! The PersonaAgent itself, on top of [`persona_engine`] (the model) and
//! [`persona_memory`] (the user's memory):
//!
//! - [`persona`]: a user's system prompt (role, description of the user,
//!   tool rules), initialised from the semantic memory, versioned, guarded;
//! - [`tools`]: `encyclopedia_search` (offline BM25 over a corpus) and
//!   `memory_search` (the user's episodic memory), in a registry that
//!   renders their descriptions and checks arguments;
//! - [`action`]: the ReAct-style loop with grammar-constrained tool calls
//!   ([`grammar`]) and the memory rule enforced by the loop, leaving a
//!   [`trace::Trace`];
//! - [`choice`]: answers bound to a task's labels (constrained decoding);
//! - [`orders`]: answers that do not depend on the order of the options
//!   (the question asked in both orders, labels scored);
//! - [`mod@align`]: test-time persona alignment (the paper's Algorithm 1);
//! - [`runtime`]: the model, encoder, user store and encyclopedia owned
//!   together, used for one user at a time under that user's cache scope.

pub mod action;
pub mod align;
pub mod choice;
pub mod error;
pub mod grammar;
pub mod llm;
pub mod orders;
pub mod persona;
pub mod prompts;
pub mod runtime;
pub mod shared;
pub mod tools;
pub mod trace;

#[cfg(test)]
mod scripted;

pub use action::{run_agent, run_agents, AgentConfig, Question, FINAL_ANSWER};
pub use align::{
    align, align_with, replay_score, standard_tools, AlignConfig, AlignContext, AlignEvent, AlignReport, Iteration, Outcome, Replay, Simulation, ToolConfig,
    UNCHANGED_NOTE,
};
pub use choice::{ChoiceGrammar, Choices};
pub use error::{AgentError, Result};
pub use grammar::{ParamKind, StepGrammar, ToolCallGrammar};
pub use llm::{AgentLlm, Continuation, Transcript};
pub use orders::{complete_choice_both_orders, Reordered};
pub use persona::Rejection;
pub use runtime::{Parts, Runtime, SharedEncoder, UserScope, ANONYMOUS_SCOPE};
pub use shared::SharedLlm;
pub use tools::{CallContext, Encyclopedia, EncyclopediaSearch, Evidence, MemorySearch, Tool, ToolCall, ToolRegistry, ToolSpec};
pub use trace::{Finish, Trace, TraceStep};
