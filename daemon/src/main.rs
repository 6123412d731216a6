//! `strackt`: thin entry point; everything lives in the library.

use clap::Parser;

fn main() {
    // Before any thread exists: one malloc arena per thread is most of an idle daemon's heap.
    strackt::daemon::limit_arenas();
    strackt::logging::init();
    let cli = strackt::cli::Cli::parse();
    let json = cli.json;
    match strackt::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) if json => {
            // Scripts asked for JSON: the failure is JSON too, on stdout where they read.
            println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
