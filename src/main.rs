use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = unlockbot::cli::Cli::parse();
    match unlockbot::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("unlockbot: {}", unlockbot::cli::error_message(&e));
            ExitCode::from(2)
        }
    }
}
