//! Renders the Jinja chat template stored in a GGUF (`tokenizer.chat_template`).

use minijinja::{context, Environment, Error as JinjaError, ErrorKind};

use super::ChatMessage;
use crate::error::{EngineError, Result};

/// ChatML, used when a model ships no template of its own.
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template together with the special-token strings it uses.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("bos_token", &self.bos_token).finish()
    }
}

fn raise_exception(msg: String) -> std::result::Result<String, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles `source` (a Jinja template in the HuggingFace convention);
    /// `None` falls back to ChatML.
    pub fn new(source: Option<&str>, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.unwrap_or(CHATML).to_string())
            .map_err(|e| EngineError::ChatTemplate(format!("cannot parse the model's template: {e}")))?;
        Ok(ChatTemplate { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where
    /// the assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template("chat").map_err(|e| EngineError::ChatTemplate(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| EngineError::ChatTemplate(format!("rendering failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_roles_and_generation_prompt() {
        let t = ChatTemplate::new(None, "", "").unwrap();
        let out = t.render(&[ChatMessage::system("S"), ChatMessage::user("hi")], true).unwrap();
        assert_eq!(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('bad order') }}{% endif %}{{ bos_token }}{{ messages[0]['content'].strip() }}";
        let t = ChatTemplate::new(Some(src), "<s>", "</s>").unwrap();
        assert_eq!(t.render(&[ChatMessage::user("  x  ")], false).unwrap(), "<s>x");
        let err = t.render(&[ChatMessage::assistant("x")], false).unwrap_err();
        assert!(err.to_string().contains("bad order"), "{err}");
    }

    #[test]
    fn a_broken_template_is_a_clear_error() {
        let err = ChatTemplate::new(Some("{% for %}"), "", "").unwrap_err();
        assert!(err.to_string().contains("chat template"), "{err}");
    }
}
