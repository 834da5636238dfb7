//! A byte grammar of the JSON a JSON Schema describes, for structured
//! outputs (`response_format: json_schema`): under it as a
//! [`crate::GrammarConstraint`] a model can only write a document the
//! schema accepts, in compact form (no whitespace).
//!
//! The subset is the one OpenAI's strict structured outputs use: `type`
//! (one or a list), `object` with `properties` (every property is written,
//! in the order the schema declares them; `required` and
//! `additionalProperties` are therefore always satisfied), `array` with
//! `items`, `minItems`, `maxItems`, `string`, `number`, `integer`,
//! `boolean`, `null`, `enum`, `const`, `anyOf` / `oneOf` (alternatives that
//! start with different characters, as `["string", "null"]` does), local
//! `$ref`s into `$defs` / `definitions` (recursion included), and `{}` /
//! `true` for any JSON value. Keywords it cannot enforce (`pattern`,
//! `minLength`, `minimum`, `allOf`, ...) are refused with the path of the
//! schema node, never ignored; `format` and annotations (`title`,
//! `description`, `default`, `examples`) do not change what is written.
//!
//! The grammar's state is a small fixed stack of frames and an `Arc` of the
//! compiled schema, so cloning it for every vocabulary entry is cheap.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::constraint::ByteGrammar;
use crate::error::{EngineError, Result};
use crate::json_grammar::{Escape, InString, JsonGrammar, Num};

/// Deepest nesting of schema values in one document.
pub const MAX_DEPTH: usize = 16;

/// Most alternatives of one `enum`.
pub const MAX_ENUM: usize = 64;

/// A JSON object whose keys keep the order they were written in (a schema's
/// properties are written in their declared order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, T>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON Schema as written (see the module docs for the subset that is
/// enforced). Deserialize it straight from the request so that property
/// order survives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Schema {
    /// `true` (anything) or `false` (nothing).
    Bool(bool),
    /// A schema object.
    Object(Box<SchemaObject>),
}

/// The keywords of a schema object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SchemaObject {
    /// `type`: one name or a list of names.
    #[serde(rename = "type", default)]
    pub kind: Option<Kinds>,
    /// `properties` of an object, in declared order.
    #[serde(default)]
    pub properties: Option<Ordered<Schema>>,
    /// `items` of an array.
    #[serde(default)]
    pub items: Option<Schema>,
    /// `minItems`.
    #[serde(rename = "minItems", default)]
    pub min_items: Option<u64>,
    /// `maxItems`.
    #[serde(rename = "maxItems", default)]
    pub max_items: Option<u64>,
    /// `enum`.
    #[serde(rename = "enum", default)]
    pub enumeration: Option<Vec<Value>>,
    /// `const` (a present `null` counts: `Some(Value::Null)`).
    #[serde(rename = "const", default, deserialize_with = "present")]
    pub constant: Option<Value>,
    /// `anyOf`.
    #[serde(rename = "anyOf", default)]
    pub any_of: Option<Vec<Schema>>,
    /// `oneOf` (written as `anyOf`: the alternatives start differently, so
    /// exactly one matches).
    #[serde(rename = "oneOf", default)]
    pub one_of: Option<Vec<Schema>>,
    /// `$ref`: `#`, `#/$defs/NAME` or `#/definitions/NAME`.
    #[serde(rename = "$ref", default)]
    pub reference: Option<String>,
    /// `$defs`.
    #[serde(rename = "$defs", default)]
    pub defs: Option<Ordered<Schema>>,
    /// `definitions` (the older name of `$defs`).
    #[serde(default)]
    pub definitions: Option<Ordered<Schema>>,
    /// Every other keyword (annotations are fine; the rest is refused).
    #[serde(flatten)]
    pub other: std::collections::BTreeMap<String, Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `type`: one name or several.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Kinds {
    /// One type.
    One(String),
    /// Any of these types.
    Many(Vec<String>),
}

/// Keywords that change nothing about what is valid to write.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "format",
    "required",
    "additionalProperties",
    "$schema",
    "$id",
    "$comment",
    "strict",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// A compiled schema node.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Every property in order: the text before property `i`'s value is
    /// `keys[i]` (`{"name":` or `,"name":`); `keys[len]` closes it.
    Object { keys: Vec<Box<[u8]>>, values: Vec<usize> },
    /// Items of one schema.
    Array { items: usize, min: u16, max: u16 },
    /// Any JSON string.
    String,
    /// A JSON number (an integer: no fraction, no exponent).
    Number { integer: bool },
    /// One of these exact texts (enum, const, booleans, null).
    Literals(Vec<Box<[u8]>>),
    /// Alternatives told apart by their first byte.
    Union(Vec<usize>),
    /// Any JSON value (any object when `object_only`).
    Any { object_only: bool },
    /// Nothing (the `false` schema): no byte is accepted.
    Never,
}

impl Node {
    /// Whether byte `b` can start a value of this node.
    fn starts_with(&self, b: u8, nodes: &[Node]) -> bool {
        self.starts_with_within(b, nodes, 32)
    }

    /// [`Node::starts_with`] through at most `fuel` references (a schema
    /// that only refers to itself starts with nothing).
    fn starts_with_within(&self, b: u8, nodes: &[Node], fuel: u8) -> bool {
        match self {
            Node::Object { .. } => b == b'{',
            Node::Any { object_only: true } => b == b'{',
            Node::Array { .. } => b == b'[',
            Node::String => b == b'"',
            Node::Number { .. } => b == b'-' || b.is_ascii_digit(),
            Node::Literals(alts) => alts.iter().any(|a| a.first() == Some(&b)),
            Node::Union(alts) => fuel > 0 && alts.iter().any(|&a| nodes[a].starts_with_within(b, nodes, fuel - 1)),
            Node::Any { object_only: false } => matches!(b, b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'),
            Node::Never => false,
        }
    }
}

/// Compiles schemas into nodes.
struct Compiler<'s> {
    root: &'s Schema,
    nodes: Vec<Node>,
    refs: HashMap<String, usize>,
}

fn err(path: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Schema { path: if path.is_empty() { "#".into() } else { format!("#{path}") }, reason: reason.into() }
}

impl<'s> Compiler<'s> {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn literal(value: &Value) -> Box<[u8]> {
        value.to_string().into_bytes().into_boxed_slice()
    }

    fn schema(&mut self, schema: &'s Schema, path: &str) -> Result<usize> {
        let object = match schema {
            Schema::Bool(true) => return Ok(self.push(Node::Any { object_only: false })),
            Schema::Bool(false) => return Ok(self.push(Node::Never)),
            Schema::Object(o) => o,
        };
        if let Some((key, _)) = object.other.iter().find(|(k, _)| !ANNOTATIONS.contains(&k.as_str())) {
            return Err(err(path, format!("the keyword `{key}` is not supported in structured outputs (supported: type, properties, items, minItems, maxItems, enum, const, anyOf, oneOf, $ref, $defs)")));
        }
        if let Some(reference) = &object.reference {
            return self.reference(reference, path);
        }
        if let Some(value) = &object.constant {
            return Ok(self.push(Node::Literals(vec![Self::literal(value)])));
        }
        if let Some(values) = &object.enumeration {
            if values.is_empty() || values.len() > MAX_ENUM {
                return Err(err(&format!("{path}/enum"), format!("needs 1 to {MAX_ENUM} values, has {}", values.len())));
            }
            return Ok(self.push(Node::Literals(values.iter().map(Self::literal).collect())));
        }
        if let Some((name, alternatives)) = object.any_of.as_ref().map(|a| ("anyOf", a)).or(object.one_of.as_ref().map(|a| ("oneOf", a))) {
            let alts = alternatives.iter().enumerate().map(|(i, s)| self.schema(s, &format!("{path}/{name}/{i}"))).collect::<Result<Vec<_>>>()?;
            return self.union(alts, &format!("{path}/{name}"));
        }
        match &object.kind {
            None => Ok(self.push(Node::Any { object_only: false })),
            Some(Kinds::One(kind)) => self.typed(object, kind, path),
            Some(Kinds::Many(kinds)) => {
                let alts = kinds.iter().map(|k| self.typed(object, k, path)).collect::<Result<Vec<_>>>()?;
                self.union(alts, &format!("{path}/type"))
            }
        }
    }

    fn typed(&mut self, object: &'s SchemaObject, kind: &str, path: &str) -> Result<usize> {
        let node = match kind {
            "object" => match &object.properties {
                None => Node::Any { object_only: true },
                Some(Ordered(properties)) => {
                    let mut keys = Vec::with_capacity(properties.len() + 1);
                    let mut values = Vec::with_capacity(properties.len());
                    for (i, (name, schema)) in properties.iter().enumerate() {
                        let mut key = if i == 0 { b"{".to_vec() } else { b",".to_vec() };
                        key.extend_from_slice(Value::String(name.clone()).to_string().as_bytes());
                        key.push(b':');
                        keys.push(key.into_boxed_slice());
                        values.push(self.schema(schema, &format!("{path}/properties/{name}"))?);
                    }
                    keys.push(if properties.is_empty() { b"{}".to_vec() } else { b"}".to_vec() }.into_boxed_slice());
                    Node::Object { keys, values }
                }
            },
            "array" => {
                let items = match &object.items {
                    Some(s) => self.schema(s, &format!("{path}/items"))?,
                    None => self.push(Node::Any { object_only: false }),
                };
                let bound = |v: Option<u64>, default: u16| v.map_or(default, |v| v.min(u64::from(u16::MAX)) as u16);
                let (min, max) = (bound(object.min_items, 0), bound(object.max_items, u16::MAX));
                if min > max {
                    return Err(err(path, format!("minItems {min} is above maxItems {max}")));
                }
                Node::Array { items, min, max }
            }
            "string" => Node::String,
            "number" => Node::Number { integer: false },
            "integer" => Node::Number { integer: true },
            "boolean" => Node::Literals(vec![b"true".to_vec().into_boxed_slice(), b"false".to_vec().into_boxed_slice()]),
            "null" => Node::Literals(vec![b"null".to_vec().into_boxed_slice()]),
            other => return Err(err(&format!("{path}/type"), format!("unknown type `{other}`"))),
        };
        Ok(self.push(node))
    }

    fn union(&mut self, alts: Vec<usize>, path: &str) -> Result<usize> {
        for b in 0..=255u8 {
            let starting: Vec<usize> = alts.iter().copied().filter(|&a| self.nodes[a].starts_with(b, &self.nodes)).collect();
            if starting.len() > 1 {
                return Err(err(
                    path,
                    format!("alternatives {starting:?} can both start with {:?}; they must start differently (e.g. a string and null)", b as char),
                ));
            }
        }
        Ok(self.push(Node::Union(alts)))
    }

    fn reference(&mut self, reference: &str, path: &str) -> Result<usize> {
        if let Some(&node) = self.refs.get(reference) {
            return Ok(node);
        }
        let root = self.root;
        let target = match reference.strip_prefix('#') {
            Some("") => root,
            Some(pointer) => {
                let name = pointer.strip_prefix("/$defs/").map(|n| (n, "$defs")).or(pointer.strip_prefix("/definitions/").map(|n| (n, "definitions")));
                let found = name.and_then(|(name, section)| {
                    let Schema::Object(o) = root else { return None };
                    let defs = if section == "$defs" { o.defs.as_ref() } else { o.definitions.as_ref() };
                    defs?.0.iter().find(|(k, _)| k == name).map(|(_, s)| s)
                });
                found.ok_or_else(|| err(path, format!("$ref `{reference}` names no schema in the root's $defs / definitions")))?
            }
            None => return Err(err(path, format!("$ref `{reference}`: only local references (`#/$defs/NAME`) are supported"))),
        };
        // A placeholder first, so that a recursive reference finds it.
        let slot = self.push(Node::Never);
        self.refs.insert(reference.to_string(), slot);
        let compiled = self.schema(target, reference.trim_start_matches('#'))?;
        self.nodes[slot] = Node::Union(vec![compiled]);
        Ok(slot)
    }
}

/// Array phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayAt {
    /// Before `[`.
    Open,
    /// After `[`: an item or `]`.
    First,
    /// After an item: `,` or `]`.
    After,
    /// After `,`: an item.
    Item,
}

/// One level of the document being written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Frame {
    /// A value of the node starts at the next byte.
    Pending(u32),
    /// In the key text before property `prop` (or the closing brace).
    Object { node: u32, prop: u16, at: u16 },
    /// In an array.
    Array { node: u32, count: u16, at: ArrayAt },
    /// In a string.
    Str(Escape),
    /// In a number.
    Num { num: Num, integer: bool },
    /// In one of several literals: those still possible (bits), bytes read.
    Lit { node: u32, viable: u64, at: u16 },
    /// In any JSON value.
    Any(JsonGrammar),
}

/// What a frame did with a byte.
enum Step {
    /// Consumed; the frame goes on.
    Stay,
    /// Consumed; the frame's value is complete.
    Pop,
    /// Not consumed; the frame's value ended before it (a number, say):
    /// the byte belongs to the enclosing level.
    PassUp,
    /// Not allowed.
    Reject,
}

/// The grammar of the documents one schema accepts (see the module docs).
#[derive(Debug, Clone)]
pub struct JsonSchemaGrammar {
    nodes: Arc<[Node]>,
    stack: [Frame; MAX_DEPTH],
    depth: u8,
}

impl JsonSchemaGrammar {
    /// Compiles a schema whose root is an object (as structured outputs
    /// require). Errors name the schema path and the keyword.
    pub fn new(schema: &Schema) -> Result<Self> {
        let mut compiler = Compiler { root: schema, nodes: Vec::new(), refs: HashMap::new() };
        let root = compiler.schema(schema, "")?;
        let nodes: Arc<[Node]> = compiler.nodes.into();
        if !nodes[root].starts_with(b'{', &nodes) || (0..=255u8).any(|b| b != b'{' && nodes[root].starts_with(b, &nodes)) {
            return Err(err("", "the root of a structured output must be an object (`\"type\": \"object\"`)"));
        }
        let mut stack = [Frame::Pending(0); MAX_DEPTH];
        stack[0] = Frame::Pending(root as u32);
        Ok(JsonSchemaGrammar { nodes, stack, depth: 1 })
    }

    /// Parses a schema from JSON text and compiles it.
    pub fn from_json(text: &str) -> Result<Self> {
        let schema: Schema = serde_json::from_str(text).map_err(|e| err("", format!("not a JSON Schema: {e}")))?;
        Self::new(&schema)
    }

    fn top(&mut self) -> &mut Frame {
        &mut self.stack[self.depth as usize - 1]
    }

    fn push(&mut self, frame: Frame) -> bool {
        if self.depth as usize >= MAX_DEPTH {
            return false;
        }
        self.stack[self.depth as usize] = frame;
        self.depth += 1;
        true
    }

    /// Replaces the pending top frame with the frame of a value of `node`
    /// that starts with `b` (not yet consumed).
    fn begin(&mut self, node: usize, b: u8) -> bool {
        let nodes = Arc::clone(&self.nodes);
        let frame = match &nodes[node] {
            Node::Object { .. } => Frame::Object { node: node as u32, prop: 0, at: 0 },
            Node::Array { .. } => Frame::Array { node: node as u32, count: 0, at: ArrayAt::Open },
            Node::String if b == b'"' => {
                *self.top() = Frame::Str(Escape::None);
                return true;
            }
            Node::Number { integer } => {
                let Some(num) = Num::start(b) else { return false };
                *self.top() = Frame::Num { num, integer: *integer };
                return true;
            }
            Node::Literals(alts) => Frame::Lit { node: node as u32, viable: if alts.len() >= 64 { u64::MAX } else { (1u64 << alts.len()) - 1 }, at: 0 },
            Node::Union(alts) => {
                let Some(&alt) = alts.iter().find(|&&a| nodes[a].starts_with(b, &nodes)) else { return false };
                return self.begin(alt, b);
            }
            Node::Any { object_only } => Frame::Any(if *object_only { JsonGrammar::object() } else { JsonGrammar::value() }),
            Node::String | Node::Never => return false,
        };
        *self.top() = frame;
        self.step(b)
    }

    /// Steps the top frame with `b`.
    fn step_top(&mut self, b: u8) -> Step {
        let nodes = Arc::clone(&self.nodes);
        match *self.top() {
            Frame::Pending(_) => Step::Reject,
            Frame::Object { node, prop, at } => {
                let Node::Object { keys, values } = &nodes[node as usize] else { return Step::Reject };
                let key = &keys[prop as usize];
                if key.get(at as usize) != Some(&b) {
                    return Step::Reject;
                }
                if at as usize + 1 < key.len() {
                    *self.top() = Frame::Object { node, prop, at: at + 1 };
                    return Step::Stay;
                }
                match values.get(prop as usize) {
                    // The closing brace.
                    None => Step::Pop,
                    Some(&value) => {
                        *self.top() = Frame::Object { node, prop: prop + 1, at: 0 };
                        if self.push(Frame::Pending(value as u32)) {
                            Step::Stay
                        } else {
                            Step::Reject
                        }
                    }
                }
            }
            Frame::Array { node, count, at } => {
                let Node::Array { items, min, max } = nodes[node as usize] else { return Step::Reject };
                let item = |g: &mut Self| {
                    *g.top() = Frame::Array { node, count: count + 1, at: ArrayAt::After };
                    if g.push(Frame::Pending(items as u32)) && g.step(b) {
                        Step::Stay
                    } else {
                        Step::Reject
                    }
                };
                match (at, b) {
                    (ArrayAt::Open, b'[') => {
                        *self.top() = Frame::Array { node, count, at: ArrayAt::First };
                        Step::Stay
                    }
                    (ArrayAt::First | ArrayAt::After, b']') if count >= min => Step::Pop,
                    (ArrayAt::After, b',') if count < max => {
                        *self.top() = Frame::Array { node, count, at: ArrayAt::Item };
                        Step::Stay
                    }
                    (ArrayAt::First, _) if max > 0 => item(self),
                    (ArrayAt::Item, _) => item(self),
                    _ => Step::Reject,
                }
            }
            Frame::Str(escape) => match escape.step(b) {
                InString::End => Step::Pop,
                InString::Go(next) => {
                    *self.top() = Frame::Str(next);
                    Step::Stay
                }
                InString::Reject => Step::Reject,
            },
            Frame::Num { num, integer } => match num.next(b, integer) {
                Some(num) => {
                    *self.top() = Frame::Num { num, integer };
                    Step::Stay
                }
                None if num.complete() => Step::PassUp,
                None => Step::Reject,
            },
            Frame::Lit { node, viable, at } => {
                let Node::Literals(alts) = &nodes[node as usize] else { return Step::Reject };
                let at_us = at as usize;
                let live = |bits: u64| alts.iter().enumerate().filter(move |(i, _)| bits & (1 << i) != 0).map(|(_, a)| a);
                let mut next = 0u64;
                for (i, alt) in alts.iter().enumerate() {
                    if viable & (1 << i) != 0 && alt.get(at_us) == Some(&b) {
                        next |= 1 << i;
                    }
                }
                if next == 0 {
                    return if live(viable).any(|a| a.len() == at_us) { Step::PassUp } else { Step::Reject };
                }
                if live(next).all(|a| a.len() == at_us + 1) {
                    return Step::Pop;
                }
                *self.top() = Frame::Lit { node, viable: next, at: at + 1 };
                Step::Stay
            }
            Frame::Any(g) => {
                let mut trial = g;
                if trial.step(b) {
                    if trial.is_complete() && !trial.may_continue() {
                        return Step::Pop;
                    }
                    *self.top() = Frame::Any(trial);
                    Step::Stay
                } else if g.is_complete() {
                    Step::PassUp
                } else {
                    Step::Reject
                }
            }
        }
    }
}

impl ByteGrammar for JsonSchemaGrammar {
    fn step(&mut self, b: u8) -> bool {
        loop {
            if self.depth == 0 {
                return false;
            }
            if let Frame::Pending(node) = *self.top() {
                return self.begin(node as usize, b);
            }
            match self.step_top(b) {
                Step::Stay => return true,
                Step::Pop => {
                    self.depth -= 1;
                    return true;
                }
                Step::PassUp => self.depth -= 1,
                Step::Reject => return false,
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.depth == 0
    }

    fn forced(&self) -> Vec<u8> {
        let Some(top) = self.depth.checked_sub(1).map(|d| self.stack[d as usize]) else { return Vec::new() };
        let nodes = &self.nodes;
        let mut node_of_pending = match top {
            Frame::Pending(node) => node as usize,
            Frame::Object { node, prop, at } => {
                let Node::Object { keys, .. } = &nodes[node as usize] else { return Vec::new() };
                return keys[prop as usize][at as usize..].to_vec();
            }
            Frame::Array { at: ArrayAt::Open, .. } => return b"[".to_vec(),
            Frame::Lit { node, viable, at } => {
                let Node::Literals(alts) = &nodes[node as usize] else { return Vec::new() };
                let live: Vec<&Box<[u8]>> = alts.iter().enumerate().filter(|(i, _)| viable & (1 << i) != 0).map(|(_, a)| a).collect();
                return match live.as_slice() {
                    [one] => one[at as usize..].to_vec(),
                    _ => Vec::new(),
                };
            }
            _ => return Vec::new(),
        };
        // A pending value: what every value of its node starts with.
        loop {
            match &nodes[node_of_pending] {
                Node::Object { keys, .. } => return keys[0].to_vec(),
                Node::Array { .. } => return b"[".to_vec(),
                Node::String => return b"\"".to_vec(),
                Node::Literals(alts) if alts.len() == 1 => return alts[0].to_vec(),
                Node::Union(alts) if alts.len() == 1 => node_of_pending = alts[0],
                _ => return Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grammar(schema: &str) -> JsonSchemaGrammar {
        JsonSchemaGrammar::from_json(schema).unwrap_or_else(|e| panic!("{e}"))
    }

    fn accepts(g: &JsonSchemaGrammar, text: &str) -> bool {
        let mut g = g.clone();
        text.bytes().all(|b| g.step(b)) && g.is_complete()
    }

    const PERSON: &str = r##"{
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "score": {"type": "number"},
            "genre": {"enum": ["sci-fi", "social commentary", "comedy"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
            "nick": {"type": ["string", "null"]},
            "ok": {"type": "boolean"},
            "extra": {}
        },
        "required": ["name", "age"],
        "additionalProperties": false
    }"##;

    #[test]
    fn documents_of_the_schema_are_accepted_and_nothing_else() {
        let g = grammar(PERSON);
        for ok in [
            r#"{"name":"Ada","age":36,"score":-1.5e3,"genre":"sci-fi","tags":["x"],"nick":null,"ok":true,"extra":{"a":[1,{}]}}"#,
            r#"{"name":"B \"q\" \u00e9","age":0,"score":2,"genre":"social commentary","tags":["x","y"],"nick":"b","ok":false,"extra":12}"#,
        ] {
            assert!(accepts(&g, ok), "{ok}");
            let _: Value = serde_json::from_str(ok).unwrap();
        }
        for bad in [
            // Properties in another order, missing, or added.
            r#"{"age":36,"name":"Ada","score":1,"genre":"sci-fi","tags":["x"],"nick":null,"ok":true,"extra":1}"#,
            r#"{"name":"Ada","age":36}"#,
            r#"{"name":"Ada","age":36,"score":1,"genre":"sci-fi","tags":["x"],"nick":null,"ok":true,"extra":1,"more":1}"#,
            // Wrong types and values.
            r#"{"name":1,"age":36,"score":1,"genre":"sci-fi","tags":["x"],"nick":null,"ok":true,"extra":1}"#,
            r#"{"name":"A","age":3.5,"score":1,"genre":"sci-fi","tags":["x"],"nick":null,"ok":true,"extra":1}"#,
            r#"{"name":"A","age":3,"score":1,"genre":"sci","tags":["x"],"nick":null,"ok":true,"extra":1}"#,
            r#"{"name":"A","age":3,"score":1,"genre":"social","tags":["x"],"nick":null,"ok":true,"extra":1}"#,
            r#"{"name":"A","age":3,"score":1,"genre":"comedy","tags":[],"nick":null,"ok":true,"extra":1}"#,
            r#"{"name":"A","age":3,"score":1,"genre":"comedy","tags":["a","b","c"],"nick":null,"ok":true,"extra":1}"#,
            r#"{"name":"A","age":3,"score":1,"genre":"comedy","tags":["a"],"nick":1,"ok":true,"extra":1}"#,
            r#"{"name":"A","age":3,"score":1,"genre":"comedy","tags":["a"],"nick":null,"ok":"yes","extra":1}"#,
            // Whitespace is not written.
            r#"{ "name":"A","age":3,"score":1,"genre":"comedy","tags":["a"],"nick":null,"ok":true,"extra":1}"#,
        ] {
            assert!(!accepts(&g, bad), "{bad}");
        }
    }

    #[test]
    fn fixed_text_is_forced_and_labels_sharing_a_prefix_stay_apart() {
        let mut g = grammar(PERSON);
        assert_eq!(g.forced(), br#"{"name":"#.to_vec());
        for b in br#"{"name":"Ada""# {
            assert!(g.step(*b));
        }
        assert_eq!(g.forced(), br#","age":"#.to_vec());
        let g = grammar(r#"{"type":"object","properties":{"g":{"enum":["style & beauty","sports","sci-fi","social commentary"]}}}"#);
        for label in ["style & beauty", "sports", "sci-fi", "social commentary"] {
            assert!(accepts(&g, &format!(r#"{{"g":"{label}"}}"#)), "{label}");
        }
        for bad in ["s", "sp", "style", "sci", "social", "sports!"] {
            assert!(!accepts(&g, &format!(r#"{{"g":"{bad}"}}"#)), "{bad}");
        }
        // One label left: the rest of it is forced.
        let mut g = g.clone();
        for b in br#"{"g":"st"# {
            assert!(g.step(*b));
        }
        assert_eq!(g.forced(), br#"yle & beauty""#.to_vec());
    }

    #[test]
    fn references_numbers_and_empty_objects() {
        let g = grammar(
            r##"{"type":"object","properties":{"node":{"$ref":"#/$defs/Node"},"n":{"enum":[1,10]},"e":{"type":"object","properties":{}}},
                "$defs":{"Node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/Node"},{"type":"null"}]}}}}}"##,
        );
        assert!(accepts(&g, r#"{"node":{"v":1,"next":{"v":-2,"next":null}},"n":10,"e":{}}"#));
        assert!(accepts(&g, r#"{"node":{"v":1,"next":null},"n":1,"e":{}}"#));
        assert!(!accepts(&g, r#"{"node":{"v":1,"next":null},"n":100,"e":{}}"#));
        assert!(!accepts(&g, r#"{"node":{"v":01,"next":null},"n":1,"e":{}}"#));
    }

    #[test]
    fn what_cannot_be_enforced_is_refused_with_its_path() {
        for (schema, needle) in [
            (r#"{"type":"object","properties":{"a":{"type":"string","pattern":"^x"}}}"#, "#/properties/a: the keyword `pattern`"),
            (r#"{"type":"string"}"#, "root of a structured output must be an object"),
            (r#"{"type":"object","properties":{"a":{"anyOf":[{"type":"integer"},{"type":"number"}]}}}"#, "#/properties/a/anyOf"),
            (r##"{"type":"object","properties":{"a":{"$ref":"#/$defs/Missing"}}}"##, "names no schema"),
            (r#"{"type":"object","properties":{"a":{"type":"tuple"}}}"#, "unknown type `tuple`"),
            (r#"{"type":"object","properties":{"a":{"type":"array","minItems":3,"maxItems":2}}}"#, "minItems 3 is above maxItems 2"),
            (r#"{"type":"object","properties":{"a":{"enum":[]}}}"#, "#/properties/a/enum"),
            ("[1]", "not a JSON Schema"),
        ] {
            let e = JsonSchemaGrammar::from_json(schema).unwrap_err().to_string();
            assert!(e.contains(needle), "{schema}: {e}");
        }
    }
}
