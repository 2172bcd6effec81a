//! `asepsis`: the one binary. It parses the command line and dispatches to one file per
//! command under `cli/`; the services are built by the library's composition root.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// mimalloc, because the face detector's large short-lived buffers suit glibc's malloc badly:
/// with it the server's peak resident size under load was about twice as high
/// (benches/e2e-load) and each detection slower (cargo bench --bench faces).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("asepsis: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("asepsis: {e:#}");
            ExitCode::FAILURE
        }
    }
}
