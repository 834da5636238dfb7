//! Tools the agent can call, and the registry that describes them to the
//! model, builds the call grammar, and checks arguments.

mod bm25;
pub mod encyclopedia;
pub mod memory_search;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{AgentError, Result};
use crate::grammar::{ParamKind, ToolCallGrammar};

pub use encyclopedia::{Article, Encyclopedia, EncyclopediaSearch};
pub use memory_search::MemorySearch;

/// One parameter of a tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamSpec {
    /// Its name in the arguments object.
    pub name: String,
    /// What it means (shown to the model).
    pub description: String,
    /// Its type and bounds.
    pub kind: ParamKind,
}

/// What a tool is, for the model and for argument checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does (shown to the model).
    pub description: String,
    /// Its parameters, in the order the call lists them.
    pub params: Vec<ParamSpec>,
}

impl ToolSpec {
    /// A tool taking one string parameter.
    pub fn with_string(name: &str, description: &str, param: &str, param_description: &str, max_len: u32) -> ToolSpec {
        ToolSpec {
            name: name.to_string(),
            description: description.to_string(),
            params: vec![ParamSpec { name: param.to_string(), description: param_description.to_string(), kind: ParamKind::String { max_len } }],
        }
    }

    /// One line per tool for the prompt.
    pub fn describe(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                let ty = match &p.kind {
                    ParamKind::String { .. } => "string".to_string(),
                    ParamKind::Integer { .. } => "integer".to_string(),
                    // The labels are the question's to state; a bound
                    // answer reads to the model like any string.
                    ParamKind::Choice { .. } => "string".to_string(),
                };
                format!("\"{}\" ({ty}): {}", p.name, p.description)
            })
            .collect();
        format!("- {}: {} Arguments: {}.", self.name, self.description, if params.is_empty() { "none".to_string() } else { params.join("; ") })
    }

    /// The grammar entry of this tool.
    fn grammar_entry(&self) -> (String, Vec<(String, ParamKind)>) {
        (self.name.clone(), self.params.iter().map(|p| (p.name.clone(), p.kind.clone())).collect())
    }

    /// Checks a call's arguments: every parameter present with its type and
    /// bounds, nothing else.
    pub fn validate(&self, arguments: &Map<String, Value>) -> Result<()> {
        for p in &self.params {
            let value = arguments.get(&p.name).ok_or_else(|| AgentError::ToolCall(format!("`{}` needs argument `{}`", self.name, p.name)))?;
            match (&p.kind, value) {
                (ParamKind::String { max_len }, Value::String(s)) => {
                    if s.len() > *max_len as usize {
                        return Err(AgentError::ToolCall(format!("`{}`: argument `{}` is longer than {max_len} bytes", self.name, p.name)));
                    }
                }
                (ParamKind::Integer { .. }, Value::Number(n)) if n.is_u64() => {}
                (ParamKind::Choice { choices }, Value::String(s)) => {
                    if choices.find(s) != Some(s.as_str()) {
                        return Err(AgentError::ToolCall(format!("`{}`: argument `{}` must be one of: {}; got {s:?}", self.name, p.name, choices.joined())));
                    }
                }
                (kind, other) => {
                    return Err(AgentError::ToolCall(format!("`{}`: argument `{}` should be {kind:?}, got {other}", self.name, p.name)));
                }
            }
        }
        if let Some(extra) = arguments.keys().find(|k| !self.params.iter().any(|p| &p.name == *k)) {
            return Err(AgentError::ToolCall(format!("`{}` has no argument `{extra}`", self.name)));
        }
        Ok(())
    }
}

/// What a choice question's answers are compared with the user's memory by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Evidence<'a> {
    /// The texts the labels stand for (LaMP-1: the two references' titles):
    /// each one's cosine similarity to the user's closest record.
    Options(&'a [String]),
    /// Labels the user's records carry as their responses: each label's
    /// votes among the user's records nearest to `query`, each record
    /// voting with its similarity (the memory's K records).
    Labels {
        /// The question.
        query: &'a str,
        /// The labels, in the question's order.
        labels: &'a [String],
    },
}

/// What a tool call knows about the question it serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallContext<'c> {
    /// Memory records this question must not see: alignment replays a
    /// user's interaction and must not retrieve its real answer.
    pub hidden_records: &'c [i64],
}

/// A tool the agent can call.
pub trait Tool {
    /// Its description.
    fn spec(&self) -> &ToolSpec;
    /// Runs it on checked arguments; returns the observation text.
    fn call(&mut self, arguments: &Map<String, Value>) -> Result<String>;
    /// Runs it for one question of several that share the tool (see
    /// [`CallContext`]). The default ignores the context.
    fn call_in(&mut self, arguments: &Map<String, Value>, context: &CallContext<'_>) -> Result<String> {
        let _ = context;
        self.call(arguments)
    }
    /// Whether this tool searches the user's own memory (the loop requires
    /// at least one such call per question).
    fn is_personal_memory(&self) -> bool {
        false
    }
    /// How strongly what this tool searches supports each answer of a
    /// choice question (see [`Evidence`]), for the question described by
    /// `context`. `None` where the tool has nothing to compare with (the
    /// default; a memory with no visible record, or none with a label).
    fn closeness(&mut self, evidence: Evidence<'_>, context: &CallContext<'_>) -> Result<Option<Vec<f32>>> {
        let _ = (evidence, context);
        Ok(None)
    }
}

/// A parsed tool call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The tool's name.
    pub tool: String,
    /// Its arguments.
    pub arguments: Map<String, Value>,
}

/// Parses a tool call written as `{"tool": NAME, "arguments": {...}}`.
/// Text around the object (a small model's chatter) is ignored.
pub fn parse_call(text: &str) -> Result<ToolCall> {
    let start = text.find('{').ok_or_else(|| AgentError::ToolCall(format!("no JSON object in {text:?}")))?;
    let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    let value = match stream.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(AgentError::ToolCall(format!("not valid JSON ({e}): {text:?}"))),
        None => return Err(AgentError::ToolCall(format!("no JSON object in {text:?}"))),
    };
    let Value::Object(mut object) = value else {
        return Err(AgentError::ToolCall(format!("a call must be a JSON object: {text:?}")));
    };
    let tool = match object.remove("tool") {
        Some(Value::String(s)) => s,
        _ => return Err(AgentError::ToolCall(format!("the call has no string field `tool`: {text:?}"))),
    };
    let arguments = match object.remove("arguments") {
        Some(Value::Object(m)) => m,
        None => Map::new(),
        Some(other) => return Err(AgentError::ToolCall(format!("`arguments` must be an object, got {other}"))),
    };
    Ok(ToolCall { tool, arguments })
}

/// The tools available to the agent for one question.
#[derive(Default)]
pub struct ToolRegistry<'a> {
    tools: Vec<Box<dyn Tool + 'a>>,
}

impl std::fmt::Debug for ToolRegistry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.iter().map(|t| &t.spec().name)).finish()
    }
}

impl<'a> ToolRegistry<'a> {
    /// An empty registry.
    pub fn new() -> Self {
        ToolRegistry { tools: Vec::new() }
    }

    /// Adds a tool; names must be unique.
    pub fn register(&mut self, tool: impl Tool + 'a) -> Result<()> {
        let name = &tool.spec().name;
        if self.tools.iter().any(|t| &t.spec().name == name) {
            return Err(AgentError::Config { name: "tools", reason: format!("tool `{name}` is registered twice") });
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()) {
            return Err(AgentError::Config { name: "tools", reason: format!("tool name {name:?} must be lowercase letters, digits and _") });
        }
        self.tools.push(Box::new(tool));
        Ok(())
    }

    /// The tools' specs.
    pub fn specs(&self) -> Vec<&ToolSpec> {
        self.tools.iter().map(|t| t.spec()).collect()
    }

    /// Whether a tool of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.spec().name == name)
    }

    /// The names of the tools that search the user's memory.
    pub fn memory_tools(&self) -> Vec<&str> {
        self.tools.iter().filter(|t| t.is_personal_memory()).map(|t| t.spec().name.as_str()).collect()
    }

    /// The tool descriptions for the prompt (plus `extra` pseudo-tools such
    /// as the final answer).
    pub fn describe(&self, extra: &[&ToolSpec]) -> String {
        self.tools.iter().map(|t| t.spec()).chain(extra.iter().copied()).map(ToolSpec::describe).collect::<Vec<_>>().join("\n")
    }

    /// The grammar allowing a call to the named tools (registered ones or
    /// `extra`).
    pub fn grammar(&self, allowed: &[&str], extra: &[&ToolSpec]) -> Result<ToolCallGrammar> {
        let entries: Vec<_> = allowed
            .iter()
            .map(|name| {
                self.tools
                    .iter()
                    .map(|t| t.spec())
                    .chain(extra.iter().copied())
                    .find(|s| s.name == *name)
                    .map(ToolSpec::grammar_entry)
                    .ok_or_else(|| AgentError::ToolCall(format!("no tool `{name}`")))
            })
            .collect::<Result<_>>()?;
        ToolCallGrammar::new(&entries)
    }

    /// How strongly the user's memory supports each answer: the first
    /// personal-memory tool's [`Tool::closeness`]; `None` if no such tool
    /// can say.
    pub fn memory_closeness(&mut self, evidence: Evidence<'_>, context: &CallContext<'_>) -> Result<Option<Vec<f32>>> {
        for tool in self.tools.iter_mut().filter(|t| t.is_personal_memory()) {
            if let Some(scores) = tool.closeness(evidence, context)? {
                return Ok(Some(scores));
            }
        }
        Ok(None)
    }

    /// Checks and runs a call.
    pub fn call(&mut self, call: &ToolCall) -> Result<String> {
        self.call_in(call, &CallContext::default())
    }

    /// Checks and runs a call made for the question described by `context`.
    pub fn call_in(&mut self, call: &ToolCall, context: &CallContext<'_>) -> Result<String> {
        let known: Vec<String> = self.tools.iter().map(|t| t.spec().name.clone()).collect();
        let tool = self
            .tools
            .iter_mut()
            .find(|t| t.spec().name == call.tool)
            .ok_or_else(|| AgentError::ToolCall(format!("unknown tool `{}` (known: {})", call.tool, known.join(", "))))?;
        tool.spec().validate(&call.arguments)?;
        tool.call_in(&call.arguments, context)
    }
}

pub(crate) use persona_memory::text::clip;

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(ToolSpec);
    impl Tool for Echo {
        fn spec(&self) -> &ToolSpec {
            &self.0
        }
        fn call(&mut self, arguments: &Map<String, Value>) -> Result<String> {
            Ok(arguments["text"].as_str().unwrap_or_default().to_string())
        }
    }

    #[test]
    fn parses_calls_and_rejects_broken_ones() {
        let call = parse_call(r#"sure! {"tool": "echo", "arguments": {"text": "hi"}} done"#).unwrap();
        assert_eq!(call.tool, "echo");
        assert_eq!(call.arguments["text"], "hi");
        for bad in
            ["no json here", r#"{"tool": 3}"#, r#"{"tool": "echo", "arguments": [1]}"#, r#"{"tool": "echo", "arguments": {"text": "unterminated}"#, "[1, 2]"]
        {
            assert!(parse_call(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_validates_arguments_and_names() {
        let mut r = ToolRegistry::new();
        r.register(Echo(ToolSpec::with_string("echo", "Repeats.", "text", "what to repeat", 5))).unwrap();
        assert!(r.register(Echo(ToolSpec::with_string("echo", "Again.", "text", "x", 5))).is_err());
        assert!(r.register(Echo(ToolSpec::with_string("Bad Name", "x", "text", "x", 5))).is_err());
        let ok = parse_call(r#"{"tool": "echo", "arguments": {"text": "hey"}}"#).unwrap();
        assert_eq!(r.call(&ok).unwrap(), "hey");
        for bad in [
            r#"{"tool": "nope", "arguments": {"text": "hey"}}"#,
            r#"{"tool": "echo", "arguments": {}}"#,
            r#"{"tool": "echo", "arguments": {"text": "far too long"}}"#,
            r#"{"tool": "echo", "arguments": {"text": 3}}"#,
            r#"{"tool": "echo", "arguments": {"text": "a", "extra": 1}}"#,
        ] {
            let err = r.call(&parse_call(bad).unwrap()).unwrap_err();
            assert!(matches!(err, AgentError::ToolCall(_)), "{bad}: {err}");
        }
        assert!(r.describe(&[]).contains("- echo: Repeats. Arguments: \"text\" (string): what to repeat."));
        let g = r.grammar(&["echo"], &[]).unwrap();
        assert!(g.accepts(r#"{"tool": "echo", "arguments": {"text": "hey"}}"#));
        assert!(r.grammar(&["missing"], &[]).is_err());
    }
}
