//! What the routes hand to the engine thread: jobs (a chat, or other work
//! on the runtime), a chat's request and its events, and the place a job
//! holds among the server's running and queued requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use persona_agent::Runtime;
use persona_engine::{ChatMessage, ClientRequest, GenerationParams, GgufChatModel, JsonSchemaGrammar};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::ApiError;
use crate::openai::Usage;

/// The runtime the engine thread serves with.
pub type ServeRuntime = Runtime<GgufChatModel>;

/// A runtime on a thread of its own (agent requests, persona building,
/// alignment), whose model calls join the engine thread's batch.
pub type ClientRuntime = Runtime<persona_agent::SharedLlm>;

/// Work for the engine thread that is not a chat (it runs between steps).
pub type Work = Box<dyn FnOnce(&mut ServeRuntime) + Send>;

/// A job for the engine thread.
pub enum Job {
    /// A chat completion.
    Chat(Box<ChatJob>),
    /// Anything else (imports, searches, embeddings...).
    Run(Work),
    /// A sequence of work running on another thread (an agent's request,
    /// persona building, alignment) through a [`persona_engine::ModelClient`]:
    /// it joins the same batch as the chats.
    Sequence(ClientRequest),
    /// A user's persona was built on another thread (or failed to be): the
    /// chats that waited for it go on.
    PersonaBuilt {
        /// The user.
        user: String,
        /// What building it gave.
        result: Result<(), ApiError>,
    },
}

/// A chat request, checked and ready for the model.
pub struct ChatJob {
    /// The completion id (stored with the exchange).
    pub id: String,
    /// Who it is for.
    pub user: Option<String>,
    /// The conversation as the client sent it.
    pub messages: Vec<ChatMessage>,
    /// Limits and sampling.
    pub params: GenerationParams,
    /// Run the full tool loop (`persona-agent`) instead of one generation.
    pub agent: bool,
    /// Store the exchange in the user's memory.
    pub store: bool,
    /// Decode under a JSON grammar (`response_format`), or free text.
    pub json: Option<JsonMode>,
    /// Where the reply goes.
    pub events: UnboundedSender<ChatEvent>,
    /// When the server received it.
    pub received: Instant,
    /// Its place in the server's limit of running and queued requests,
    /// given back when the job is dropped.
    pub _slot: SlotGuard,
}

/// The JSON a reply must be.
#[derive(Debug, Clone)]
pub enum JsonMode {
    /// Any JSON object (`json_object`).
    Object,
    /// A document of a schema (`json_schema`).
    Schema(Box<JsonSchemaGrammar>),
}

/// What of a user's went into a prompt (answered as `persona_context`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PersonalContext {
    /// The user.
    pub user: String,
    /// The persona version used as the system prompt (none for a user
    /// without history).
    pub persona_version: Option<i64>,
    /// Ids of the user's records put in the prompt.
    pub records: Vec<i64>,
}

/// What the engine thread reports about a chat.
#[derive(Debug)]
pub enum ChatEvent {
    /// The prompt is built and joined the batch.
    Started(Option<PersonalContext>),
    /// Reply text.
    Text(String),
    /// The reply is complete (and stored).
    Done {
        /// The whole text.
        text: String,
        /// OpenAI's finish reason.
        finish: &'static str,
        /// Token counts.
        usage: Usage,
    },
    /// The request failed.
    Failed(ApiError),
}

/// A place among the running and queued requests, given back on drop.
pub struct SlotGuard(Arc<AtomicUsize>);

impl SlotGuard {
    /// Holds a place already counted in `inflight`.
    pub(crate) fn taken(inflight: Arc<AtomicUsize>) -> Self {
        SlotGuard(inflight)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
