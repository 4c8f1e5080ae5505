//! The terminal channel: the same engine and rules in an interactive
//! conversation, for trying or demonstrating the bot without an SMS account.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::domain::{Channel, ConversationKey};
use crate::engine::{Engine, Inbound};

/// The terminal's one conversation.
pub fn conversation_key() -> ConversationKey {
    ConversationKey::new(Channel::Terminal, "local")
        .unwrap_or_else(|_| unreachable!("a fixed, valid key"))
}

/// Run a conversation on `input`/`output` until end of input or `/quit`.
pub async fn run(
    engine: Arc<Engine>,
    input: impl tokio::io::AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> anyhow::Result<()> {
    let key = conversation_key();
    let mut lines = BufReader::new(input).lines();
    output
        .write_all(b"Type a message as you would text it (for example UNLOCK). /quit to leave.\n")
        .await?;
    let mut n: u64 = 0;
    loop {
        output.write_all(b"\nyou> ").await?;
        output.flush().await?;
        let Some(line) = lines.next_line().await? else {
            output.write_all(b"\n").await?;
            break;
        };
        if line.trim() == "/quit" {
            break;
        }
        n += 1;
        let inbound = Inbound {
            language: None,
            key: key.clone(),
            message_id: None,
            start_over: false,
            own_mobile: None,
            can_share_number: false,
            text: line,
        };
        let reply = match engine.handle(inbound).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::error!(error = %e, turn = n, "turn failed");
                engine.unavailable_reply()
            }
        };
        for part in &reply.parts {
            output
                .write_all(format!("bot> {part}\n").as_bytes())
                .await?;
        }
        output.flush().await?;
    }
    Ok(())
}
