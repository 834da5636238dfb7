//! `persona chat`: an interactive multi-turn conversation.

use std::io::{BufRead, Write};

use anyhow::Result;
use clap::Args;
use persona_engine::{ChatMessage, ChatModel};

use super::generate::GenOptions;
use crate::resolve::Context;

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub options: GenOptions,
}

const HELP: &str = "commands: /reset clears the conversation, /exit (or Ctrl-D) quits";

pub fn run(ctx: &Context, args: ChatArgs) -> Result<()> {
    let mut model = args.options.load(ctx)?;
    let params = args.options.params();
    let mut history: Vec<ChatMessage> = args.options.system.iter().map(|s| ChatMessage::system(s.clone())).collect();
    let base_len = history.len();
    eprintln!("chatting with {} ({} tokens of context). {HELP}", model.info().name, model.info().context_length);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        print!("> ");
        stdout.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.truncate(base_len);
                eprintln!("(conversation cleared)");
                continue;
            }
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::user(line));
        let result = model.chat(&history, &params, &mut |piece| {
            print!("{piece}");
            let _ = std::io::stdout().flush();
            true
        });
        println!();
        match result {
            Ok(reply) => history.push(ChatMessage::assistant(reply.text)),
            Err(e) => {
                // Keep the session alive: drop the turn that failed.
                history.pop();
                eprintln!("error: {e}");
            }
        }
    }
    Ok(())
}
