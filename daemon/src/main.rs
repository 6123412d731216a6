//! `strackt`: thin entry point; everything lives in the library.

use clap::Parser;

fn main() {
    strackt::logging::init();
    let cli = strackt::cli::Cli::parse();
    match strackt::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
