//! `strackt`: thin entry point; everything lives in the library.

use clap::Parser;

fn main() {
    // journald adds timestamps; keep lines short (bootc's choice).
    tracing_subscriber::fmt()
        .without_time()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRACKT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = strackt::cli::Cli::parse();
    match strackt::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
